//! Re-encoding the stored catalogue with the loaded models (after switching model sets): every
//! live item goes through the ingest path again, from its stored text and the photos its image
//! URIs point at on this machine, so the result is what a fresh ingest would have written.
//!
//! Photos are never stored (only their vectors), so a URI that is not a readable local file
//! leaves the item encoded from its text alone; the report names those items. Vectors a client
//! brought for spaces without a role (no model makes them) are carried over unchanged.

use super::ingest::{Ingester, Rejection};
use super::spaces::{Roles, SpaceRole};
use super::{blocking, PipelineError};
use crate::collection::Collection;
use crate::model::{NewItem, Version};
use std::path::Path;
use std::sync::Arc;

/// Items re-encoded per write group.
const GROUP: usize = 32;

#[derive(Debug, Default)]
pub struct ReembedReport {
    /// Live items found.
    pub items: usize,
    /// Items written again with fresh vectors.
    pub reencoded: usize,
    /// Items with image URIs none of which could be read here: encoded from text only.
    pub without_photos: Vec<String>,
    /// Items the ingest path refused (e.g. photo-only items whose photos are gone): they keep
    /// vectors of the old models.
    pub rejected: Vec<Rejection>,
}

/// Reads a photo named by an image URI: a local path or a `file://` URL.
fn read_local(uri: &str) -> Option<Vec<u8>> {
    let path = uri.strip_prefix("file://").unwrap_or(uri);
    let p = Path::new(path);
    if p.is_file() {
        std::fs::read(p).ok()
    } else {
        None
    }
}

/// Re-encodes every live item; `progress(done, total)` is called after each group.
pub async fn reembed(
    collection: &Arc<Collection>,
    ingester: &Ingester,
    roles: &Roles,
    mut progress: impl FnMut(usize, usize),
) -> Result<ReembedReport, PipelineError> {
    let c = collection.clone();
    let versions: Vec<Version> = blocking(move || {
        let mut v = Vec::new();
        c.for_each_item(|x| v.push(x))?;
        Ok(v)
    })
    .await?;
    let role_spaces: Vec<String> = [SpaceRole::Text, SpaceRole::Visual]
        .iter()
        .filter_map(|r| roles.get(*r).map(|s| s.name.clone()))
        .collect();
    let mut report = ReembedReport {
        items: versions.len(),
        ..Default::default()
    };
    progress(0, report.items);
    let mut done = 0;
    for chunk in versions.chunks(GROUP) {
        let mut group = Vec::with_capacity(chunk.len());
        for v in chunk {
            let images: Vec<Vec<u8>> = v
                .item
                .image_uris
                .iter()
                .filter_map(|u| read_local(u))
                .collect();
            if images.is_empty() && !v.item.image_uris.is_empty() {
                report.without_photos.push(v.item.id.clone());
            }
            let mut vectors = Vec::new();
            for space in v.spaces.iter().filter(|s| !role_spaces.contains(s)) {
                let (_, row) = collection.item_vector(&v.item.id, space)?;
                vectors.push((space.clone(), row));
            }
            // Videos are re-read from their URIs like photos; one that is gone leaves the item
            // with what remains (its photos and title).
            let videos: Vec<Vec<u8>> = v
                .item
                .video_uris
                .iter()
                .filter_map(|u| read_local(u))
                .collect();
            group.push(NewItem {
                item: v.item.clone(),
                images,
                videos,
                vectors,
            });
        }
        let out = ingester.write_group(group).await?;
        report.reencoded += out.accepted;
        report
            .rejected
            .extend(out.rejected.into_iter().map(|mut r| {
                r.index += done;
                r
            }));
        done += chunk.len();
        progress(done, report.items);
    }
    Ok(report)
}
