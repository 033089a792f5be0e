//! Catalogue files for `mmsearch ingest`: one JSON object per line.
//!
//! ```json
//! {"id":"tripod","title":"Tripod","description":"...","category":"photo","price":49.9,
//!  "attributes":{"brand":"Acme"},"images":["images/tripod.jpg"],"vectors":{"shared":[0.1, ...]}}
//! ```
//! Image paths are read from disk (relative to the catalogue file) and sent as bytes; the
//! path is kept as the item's image URI. `videos` (paths) and `video_uris` work the same way.

use crate::pb;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogLine {
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub price: f64,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub image_uris: Vec<String>,
    #[serde(default)]
    pub videos: Vec<String>,
    #[serde(default)]
    pub video_uris: Vec<String>,
    #[serde(default)]
    pub vectors: BTreeMap<String, Vec<f32>>,
    #[serde(default)]
    pub text_weight: Option<f32>,
    #[serde(default)]
    pub image_weight: Option<f32>,
}

/// Parses one line and loads its photos. Errors are the reasons shown to the user.
pub fn parse_line(line: &str, base_dir: &Path) -> Result<pb::Item, String> {
    parse_line_with(line, |p| {
        let path = base_dir.join(p);
        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    })
}

/// [`parse_line`] with the photo (and video) loader supplied by the caller: the parsing and validation
/// are the same, without touching the file system.
pub fn parse_line_with(
    line: &str,
    mut load_image: impl FnMut(&str) -> Result<Vec<u8>, String>,
) -> Result<pb::Item, String> {
    let parsed: CatalogLine =
        serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    if parsed.id.trim().is_empty() {
        return Err("missing id".into());
    }
    let mut images = Vec::with_capacity(parsed.images.len());
    let mut uris = parsed.image_uris.clone();
    for p in &parsed.images {
        images.push(load_image(p)?);
        if parsed.image_uris.is_empty() {
            uris.push(p.clone());
        }
    }
    let mut videos = Vec::with_capacity(parsed.videos.len());
    let mut video_uris = parsed.video_uris.clone();
    for p in &parsed.videos {
        videos.push(load_image(p)?);
        if parsed.video_uris.is_empty() {
            video_uris.push(p.clone());
        }
    }
    Ok(pb::Item {
        id: parsed.id,
        title: parsed.title,
        description: parsed.description,
        category: parsed.category,
        price: parsed.price,
        attributes: parsed.attributes.into_iter().collect::<HashMap<_, _>>(),
        images,
        image_uris: uris,
        vectors: parsed
            .vectors
            .into_iter()
            .map(|(space, values)| pb::Vector { space, values })
            .collect(),
        text_weight: parsed.text_weight,
        image_weight: parsed.image_weight,
        version: 0,
        videos,
        video_uris,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let item = parse_line(r#"{"id":"a","title":"T","price":2.5,"attributes":{"k":"v"},"vectors":{"shared":[1,0]}}"#, dir.path()).unwrap();
        assert_eq!(item.vectors[0].values, vec![1.0, 0.0]);
        assert!(parse_line("{", dir.path())
            .unwrap_err()
            .contains("invalid JSON"));
        assert!(parse_line(r#"{"id":" "}"#, dir.path())
            .unwrap_err()
            .contains("missing id"));
        assert!(
            parse_line(r#"{"id":"a","images":["nope.jpg"]}"#, dir.path())
                .unwrap_err()
                .contains("nope.jpg")
        );
        assert!(parse_line(r#"{"id":"a","colour":"red"}"#, dir.path()).is_err());
    }
}
