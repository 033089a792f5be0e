//! The on-disk encoding of an item version: one format byte, then bincode.

use super::{Result, StoreError};
use crate::model::{Item, Version};
use serde::Deserialize;

/// Format 3: bincode of [`Version`] (metadata nested in `item`, with `video_uris`).
const FORMAT: u8 = 3;
/// Format 2: as 3, without `Item::video_uris` (before video items). Still read.
const FORMAT_NO_VIDEO: u8 = 2;
/// Format 1 (before the item model was shared): the same fields, flat, with `seq` after `id`.
/// Still read, so data directories and snapshots written before it keep opening.
const FORMAT_FLAT: u8 = 1;

#[derive(Deserialize)]
struct FlatV1 {
    id: String,
    seq: u64,
    title: String,
    description: String,
    category: String,
    price: f64,
    attributes: Vec<(String, String)>,
    image_uris: Vec<String>,
    text_weight: Option<f32>,
    image_weight: Option<f32>,
    spaces: Vec<String>,
}

#[derive(Deserialize)]
struct ItemV2 {
    id: String,
    title: String,
    description: String,
    category: String,
    price: f64,
    attributes: Vec<(String, String)>,
    image_uris: Vec<String>,
    text_weight: Option<f32>,
    image_weight: Option<f32>,
}

#[derive(Deserialize)]
struct VersionV2 {
    item: ItemV2,
    seq: u64,
    spaces: Vec<String>,
}

impl From<VersionV2> for Version {
    fn from(v: VersionV2) -> Version {
        let i = v.item;
        let item = Item {
            id: i.id,
            title: i.title,
            description: i.description,
            category: i.category,
            price: i.price,
            attributes: i.attributes,
            image_uris: i.image_uris,
            text_weight: i.text_weight,
            image_weight: i.image_weight,
            video_uris: Vec::new(),
        };
        Version {
            item,
            seq: v.seq,
            spaces: v.spaces,
        }
    }
}

impl From<FlatV1> for Version {
    fn from(f: FlatV1) -> Version {
        Version {
            item: Item {
                id: f.id,
                title: f.title,
                description: f.description,
                category: f.category,
                price: f.price,
                attributes: f.attributes,
                image_uris: f.image_uris,
                text_weight: f.text_weight,
                image_weight: f.image_weight,
                video_uris: Vec::new(),
            },
            seq: f.seq,
            spaces: f.spaces,
        }
    }
}

pub fn encode(v: &Version) -> Vec<u8> {
    let mut out = vec![FORMAT];
    // Encoding plain owned data into a Vec cannot fail.
    if let Ok(body) = bincode::serde::encode_to_vec(v, bincode::config::standard()) {
        out.extend_from_slice(&body);
    }
    out
}

pub fn decode(key: &str, bytes: &[u8]) -> Result<Version> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let config = bincode::config::standard();
    match bytes.first() {
        Some(&FORMAT) => bincode::serde::decode_from_slice::<Version, _>(&bytes[1..], config)
            .map(|(v, _)| v)
            .map_err(|e| corrupt(e.to_string())),
        Some(&FORMAT_NO_VIDEO) => {
            bincode::serde::decode_from_slice::<VersionV2, _>(&bytes[1..], config)
                .map(|(v, _)| v.into())
                .map_err(|e| corrupt(e.to_string()))
        }
        Some(&FORMAT_FLAT) => bincode::serde::decode_from_slice::<FlatV1, _>(&bytes[1..], config)
            .map(|(v, _)| v.into())
            .map_err(|e| corrupt(e.to_string())),
        Some(v) => Err(corrupt(format!("unknown record format {v}"))),
        None => Err(corrupt("empty record".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version() -> Version {
        Version {
            item: Item {
                id: "a".into(),
                title: "Tripod".into(),
                price: 12.5,
                attributes: vec![("brand".into(), "Acme".into())],
                ..Default::default()
            },
            seq: 7,
            spaces: vec!["shared".into()],
        }
    }

    #[test]
    fn round_trip() {
        let v = version();
        assert_eq!(decode("a", &encode(&v)).unwrap(), v);
        assert!(decode("a", &[9, 1, 2]).is_err());
        assert!(decode("a", &[]).is_err());
    }

    #[test]
    fn reads_format_1() {
        // A record as the flat format wrote it: id, seq, then the remaining metadata fields.
        #[derive(serde::Serialize)]
        struct Flat<'a>(
            &'a str,
            u64,
            &'a str,
            &'a str,
            &'a str,
            f64,
            Vec<(String, String)>,
            Vec<String>,
            Option<f32>,
            Option<f32>,
            Vec<String>,
        );
        let v = version();
        let flat = Flat(
            "a",
            7,
            "Tripod",
            "",
            "",
            12.5,
            v.item.attributes.clone(),
            vec![],
            None,
            None,
            v.spaces.clone(),
        );
        let mut bytes = vec![FORMAT_FLAT];
        bytes.extend(bincode::serde::encode_to_vec(&flat, bincode::config::standard()).unwrap());
        assert_eq!(decode("a", &bytes).unwrap(), v);
    }

    #[test]
    fn reads_format_2() {
        // Format 2 was Version without Item::video_uris: the same bytes minus its empty list.
        #[derive(serde::Serialize)]
        struct I2<'a>(
            &'a str,
            &'a str,
            &'a str,
            &'a str,
            f64,
            Vec<(String, String)>,
            Vec<String>,
            Option<f32>,
            Option<f32>,
        );
        let mut v = version();
        v.item.image_uris = vec!["a.jpg".into()];
        let i = &v.item;
        let old = (
            I2(
                &i.id,
                &i.title,
                "",
                "",
                i.price,
                i.attributes.clone(),
                i.image_uris.clone(),
                None,
                Some(0.3),
            ),
            7u64,
            v.spaces.clone(),
        );
        let mut bytes = vec![FORMAT_NO_VIDEO];
        bytes.extend(bincode::serde::encode_to_vec(&old, bincode::config::standard()).unwrap());
        v.item.image_weight = Some(0.3);
        assert_eq!(decode("a", &bytes).unwrap(), v);
        v.item.video_uris = vec!["a.mp4".into()];
        assert_eq!(decode("a", &encode(&v)).unwrap(), v);
    }
}
