use super::{Result, StoreError};
use serde::{Deserialize, Serialize};

/// An item version as stored: metadata plus the sequence number of this version. Photo bytes
/// are never stored — only their vectors (in the `vectors` family) and their URIs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StoredItem {
    pub id: String,
    pub seq: u64,
    pub title: String,
    pub description: String,
    pub category: String,
    pub price: f64,
    pub attributes: Vec<(String, String)>,
    pub image_uris: Vec<String>,
    pub text_weight: Option<f32>,
    pub image_weight: Option<f32>,
    /// Spaces this version has vectors in.
    pub spaces: Vec<String>,
}

/// Leading byte of every record, so the layout can evolve without guessing.
const FORMAT: u8 = 1;

impl StoredItem {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        // Encoding plain owned data into a Vec cannot fail.
        if let Ok(body) = bincode::serde::encode_to_vec(self, bincode::config::standard()) {
            out.extend_from_slice(&body);
        }
        out
    }

    pub fn decode(key: &str, bytes: &[u8]) -> Result<StoredItem> {
        let corrupt = |reason: String| StoreError::Corrupt { key: key.to_string(), reason };
        match bytes.first() {
            Some(&FORMAT) => bincode::serde::decode_from_slice(&bytes[1..], bincode::config::standard())
                .map(|(item, _)| item)
                .map_err(|e| corrupt(e.to_string())),
            Some(v) => Err(corrupt(format!("unknown record format {v}"))),
            None => Err(corrupt("empty record".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let item = StoredItem {
            id: "a".into(),
            seq: 7,
            title: "Tripod".into(),
            price: 12.5,
            attributes: vec![("brand".into(), "Acme".into())],
            ..Default::default()
        };
        assert_eq!(StoredItem::decode("a", &item.encode()).unwrap(), item);
        assert!(StoredItem::decode("a", &[9, 1, 2]).is_err());
    }
}
