//! The item, once: what a client sends, what the store keeps, what a hit returns.

use serde::{Deserialize, Serialize};

pub const MAX_ID_BYTES: usize = 512;
pub const MAX_IMAGES_PER_ITEM: usize = 16;
pub const MAX_VIDEOS_PER_ITEM: usize = 4;
pub const MAX_ATTRIBUTES: usize = 256;
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// A catalogue item's metadata. Photo bytes are never part of it (only their URIs): photos are
/// encoded at ingest and only their vectors are kept.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub price: f64,
    /// Sorted by key, so equal items compare and encode equally whatever order they came in.
    pub attributes: Vec<(String, String)>,
    pub image_uris: Vec<String>,
    /// Per-item fusion weights (text vs photos) for the text-role space; `None` = configured.
    pub text_weight: Option<f32>,
    pub image_weight: Option<f32>,
    /// Where the item's videos live, for display (their frames and speech are encoded at ingest).
    pub video_uris: Vec<String>,
}

/// One stored version of an item: the metadata, its write sequence number (the API's
/// `version`) and the vector spaces it has vectors in.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Version {
    pub item: Item,
    pub seq: u64,
    pub spaces: Vec<String>,
}

/// An item as written by a client: metadata, photos to encode, and vectors it brings itself.
#[derive(Debug, Clone, Default)]
pub struct NewItem {
    pub item: Item,
    /// Encoded photos (JPEG, PNG, WebP, GIF, BMP); consumed by the encoders, never stored.
    pub images: Vec<Vec<u8>>,
    /// Videos (MP4, WebM, … whatever FFmpeg reads); consumed by the encoders, never stored.
    pub videos: Vec<Vec<u8>>,
    /// Precomputed vectors by space name; the encoders fill the role spaces not given.
    pub vectors: Vec<(String, Vec<f32>)>,
}

impl Item {
    /// Checks the fields against the write limits. Vectors and spaces are the pipeline's to check.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() {
            return Err("id is empty".into());
        }
        if self.id.len() > MAX_ID_BYTES {
            return Err(format!("id is longer than {MAX_ID_BYTES} bytes"));
        }
        if self.id.chars().any(char::is_control) {
            return Err("id contains control characters".into());
        }
        if !self.price.is_finite() || self.price < 0.0 {
            return Err(format!(
                "price {} must be a finite, non-negative number",
                self.price
            ));
        }
        if self.title.len() + self.description.len() > MAX_TEXT_BYTES {
            return Err(format!("title + description exceed {MAX_TEXT_BYTES} bytes"));
        }
        if self.attributes.len() > MAX_ATTRIBUTES {
            return Err(format!(
                "{} attributes; at most {MAX_ATTRIBUTES}",
                self.attributes.len()
            ));
        }
        Ok(())
    }

    /// Attributes in the canonical (sorted) order.
    pub fn sort_attributes(&mut self) {
        self.attributes.sort();
    }
}

impl NewItem {
    pub fn validate(&self) -> Result<(), String> {
        self.item.validate()?;
        if self.images.len() > MAX_IMAGES_PER_ITEM {
            return Err(format!(
                "{} photos; at most {MAX_IMAGES_PER_ITEM} per item",
                self.images.len()
            ));
        }
        if self.videos.len() > MAX_VIDEOS_PER_ITEM {
            return Err(format!(
                "{} videos; at most {MAX_VIDEOS_PER_ITEM} per item",
                self.videos.len()
            ));
        }
        Ok(())
    }
}
