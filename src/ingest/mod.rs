//! The write path: validate → encode what is missing → fuse → prepare → durable write.
//!
//! An item may bring precomputed vectors for any configured space; the encoders fill the
//! `shared` and `visual` spaces that are not given (text of the title, photos). Titles and photos
//! go through the dynamic batcher (`encode::batcher`), so concurrent streams share model calls.
//! A bad item is rejected with a reason and never aborts the rest of its group.

use crate::collection::{Collection, CollectionError, PreparedItem};
use mmsearch_index::SpaceSpec;
use crate::encode::batcher::{BatcherConfig, EncodeBatcher};
use crate::encode::{Encoders, ImageVectors};
use crate::fuse::{fuse_item, ItemEvidence};
use crate::search::{SHARED_SPACE, VISUAL_SPACE};
use crate::store::StoredItem;
use std::collections::HashMap;
use std::sync::Arc;

pub const MAX_ID_BYTES: usize = 512;
pub const MAX_IMAGES_PER_ITEM: usize = 16;
pub const MAX_ATTRIBUTES: usize = 256;
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// An item as a client sends it.
#[derive(Debug, Clone, Default)]
pub struct IngestItem {
    pub id: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub price: f64,
    pub attributes: Vec<(String, String)>,
    pub images: Vec<Vec<u8>>,
    pub image_uris: Vec<String>,
    pub vectors: Vec<(String, Vec<f32>)>,
    pub text_weight: Option<f32>,
    pub image_weight: Option<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Position in the group.
    pub index: usize,
    pub id: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Collection(#[from] crate::collection::CollectionError),
    #[error("ingest task failed: {0}")]
    Task(String),
}

pub struct GroupOutcome {
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
    pub last_seq: Option<u64>,
}

struct EncodePlan {
    want_shared: bool,
    want_visual: bool,
}

pub struct Ingester {
    collection: Arc<Collection>,
    batcher: Option<EncodeBatcher>,
}

impl Ingester {
    /// Must be called inside a tokio runtime (the batcher's workers are tasks).
    pub fn new(collection: Arc<Collection>, encoders: Option<Arc<Encoders>>, batching: &BatcherConfig) -> Ingester {
        let batcher = encoders.map(|e| EncodeBatcher::spawn(e, batching));
        Ingester { collection, batcher }
    }

    /// Writes one group. Returns once every accepted item is durable (WAL-synced).
    pub async fn write_group(&self, items: Vec<IngestItem>) -> Result<GroupOutcome, IngestError> {
        let mut rejected = Vec::new();
        let mut valid: Vec<(usize, IngestItem)> = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            match validate_item(&item, self.collection.specs()) {
                Ok(()) => valid.push((index, item)),
                Err(reason) => rejected.push(Rejection { index, id: item.id.clone(), reason }),
            }
        }
        let encoded = futures::future::join_all(valid.iter_mut().map(|(_, item)| self.encode_missing(item))).await;
        let mut prepared = Vec::with_capacity(valid.len());
        for ((index, item), enc) in valid.into_iter().zip(encoded) {
            let id = item.id.clone();
            match enc.and_then(|extra| self.prepare(item, extra)) {
                Ok(p) => prepared.push(p),
                Err(reason) => rejected.push(Rejection { index, id, reason }),
            }
        }
        rejected.sort_by_key(|r| r.index);
        let accepted = prepared.len();
        let collection = self.collection.clone();
        let seqs = tokio::task::spawn_blocking(move || collection.upsert(prepared))
            .await
            .map_err(|e| IngestError::Task(e.to_string()))??;
        Ok(GroupOutcome { accepted, rejected, last_seq: seqs.last().copied() })
    }

    /// Encodes what the item did not bring. Photo bytes are taken out of the item: they are
    /// never stored, only their vectors.
    async fn encode_missing(&self, it: &mut IngestItem) -> Result<HashMap<String, Vec<f32>>, String> {
        let Some(batcher) = &self.batcher else { return Ok(HashMap::new()) };
        let fusion = &self.collection.config().fusion;
        let want_shared = self.collection.spec(SHARED_SPACE).is_ok() && !it.vectors.iter().any(|(s, _)| s == SHARED_SPACE);
        let want_visual = self.collection.spec(VISUAL_SPACE).is_ok()
            && !it.images.is_empty()
            && !it.vectors.iter().any(|(s, _)| s == VISUAL_SPACE);
        if !want_shared && !want_visual {
            return Ok(HashMap::new());
        }
        let text = crate::fuse::item_text(fusion, &it.title, Some(&it.description));
        let text_job = async {
            match want_shared && !text.is_empty() {
                true => batcher.embed_text(text).await.map(Some).map_err(|e| format!("title: {e}")),
                false => Ok(None),
            }
        };
        let photos = std::mem::take(&mut it.images);
        let photo_jobs = futures::future::join_all(photos.into_iter().enumerate().map(|(i, bytes)| async move {
            batcher.embed_image(bytes).await.map_err(|e| format!("photo {i}: {e}"))
        }));
        let (text_vec, images) = futures::join!(text_job, photo_jobs);
        let text_vec = text_vec?;
        let images: Vec<ImageVectors> = images.into_iter().collect::<Result<_, _>>()?;
        let plan = EncodePlan { want_shared, want_visual };
        Ok(self.fuse(&plan, text_vec.as_deref(), &images, it))
    }

    fn fuse(&self, plan: &EncodePlan, text: Option<&[f32]>, images: &[ImageVectors], it: &IngestItem) -> HashMap<String, Vec<f32>> {
        let evidence = ItemEvidence {
            text,
            photo_shared: images.iter().map(|v| v.shared.as_slice()).collect(),
            photo_visual: images.iter().filter_map(|v| v.visual.as_deref()).collect(),
        };
        let fused = fuse_item(&evidence, &self.collection.config().fusion, it.text_weight, it.image_weight);
        let mut out = HashMap::new();
        if plan.want_shared {
            if let Some(v) = fused.shared {
                out.insert(SHARED_SPACE.to_string(), v);
            }
        }
        if plan.want_visual {
            if let Some(v) = fused.visual {
                out.insert(VISUAL_SPACE.to_string(), v);
            }
        }
        out
    }

    fn prepare(&self, item: IngestItem, encoded: HashMap<String, Vec<f32>>) -> Result<PreparedItem, String> {
        let mut vectors = Vec::with_capacity(item.vectors.len() + encoded.len());
        for (space, values) in item.vectors.iter().map(|(s, v)| (s.clone(), v.clone())).chain(encoded) {
            let spec = self.collection.spec(&space).map_err(|e| e.to_string())?;
            let prepared = spec.metric.prepare(spec.dim, &values).map_err(|e| format!("space {space:?}: {e}"))?;
            vectors.push((space, prepared));
        }
        if vectors.is_empty() {
            return Err(if self.batcher.is_some() {
                "nothing to index: give a title, a photo or a vector".into()
            } else {
                "no vectors given, and this server runs without encoders".into()
            });
        }
        vectors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(PreparedItem {
            item: StoredItem {
                id: item.id,
                seq: 0,
                title: item.title,
                description: item.description,
                category: item.category,
                price: item.price,
                attributes: item.attributes,
                image_uris: item.image_uris,
                text_weight: item.text_weight,
                image_weight: item.image_weight,
                spaces: Vec::new(),
            },
            vectors,
        })
    }
}

/// Checks one client item against the write limits and the configured spaces, before any
/// encoder work. Pure (no engine), so the wire-to-domain path can be exercised on its own.
pub fn validate_item(item: &IngestItem, specs: &[SpaceSpec]) -> Result<(), String> {
    if item.id.is_empty() {
        return Err("id is empty".into());
    }
    if item.id.len() > MAX_ID_BYTES {
        return Err(format!("id is longer than {MAX_ID_BYTES} bytes"));
    }
    if item.id.chars().any(char::is_control) {
        return Err("id contains control characters".into());
    }
    if !item.price.is_finite() || item.price < 0.0 {
        return Err(format!("price {} must be a finite, non-negative number", item.price));
    }
    if item.title.len() + item.description.len() > MAX_TEXT_BYTES {
        return Err(format!("title + description exceed {MAX_TEXT_BYTES} bytes"));
    }
    if item.images.len() > MAX_IMAGES_PER_ITEM {
        return Err(format!("{} photos; at most {MAX_IMAGES_PER_ITEM} per item", item.images.len()));
    }
    if item.attributes.len() > MAX_ATTRIBUTES {
        return Err(format!("{} attributes; at most {MAX_ATTRIBUTES}", item.attributes.len()));
    }
    for w in [item.text_weight, item.image_weight].into_iter().flatten() {
        if !w.is_finite() || w < 0.0 {
            return Err(format!("fusion weight {w} must be finite and non-negative"));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (space, values) in &item.vectors {
        let spec = specs
            .iter()
            .find(|s| s.name == *space)
            .ok_or_else(|| CollectionError::UnknownSpace(space.clone()).to_string())?;
        if !seen.insert(space) {
            return Err(format!("two vectors for space {space:?}"));
        }
        spec.metric.prepare(spec.dim, values).map_err(|e| format!("vector for space {space:?}: {e}"))?;
    }
    Ok(())
}
