//! The write path: validate → encode what is missing → fuse → prepare → durable write.
//!
//! An item may bring precomputed vectors for any configured space; the encoders fill the
//! `shared` and `visual` spaces that are not given (text of the title, photos). A bad item is
//! rejected with a reason and never aborts the rest of its group.

use crate::collection::{Collection, PreparedItem};
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
}

pub struct GroupOutcome {
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
    pub last_seq: Option<u64>,
}

struct EncodePlan {
    want_shared: bool,
    want_visual: bool,
    text: Option<String>,
    /// Photos to encode (all of the item's, or none).
    photos: usize,
}

pub struct Ingester {
    collection: Arc<Collection>,
    encoders: Option<Arc<Encoders>>,
}

impl Ingester {
    pub fn new(collection: Arc<Collection>, encoders: Option<Arc<Encoders>>) -> Ingester {
        Ingester { collection, encoders }
    }

    /// Writes one group (blocking: encoders and a synced RocksDB write). Returns once every
    /// accepted item is durable.
    pub fn write_group(&self, items: Vec<IngestItem>) -> Result<GroupOutcome, IngestError> {
        let mut rejected = Vec::new();
        let mut valid: Vec<(usize, IngestItem)> = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            match self.validate(&item) {
                Ok(()) => valid.push((index, item)),
                Err(reason) => rejected.push(Rejection { index, id: item.id.clone(), reason }),
            }
        }
        let mut prepared = Vec::with_capacity(valid.len());
        let encoded = self.encode_missing(&valid);
        for ((index, item), enc) in valid.into_iter().zip(encoded) {
            match enc.and_then(|extra| self.prepare(item.clone(), extra)) {
                Ok(p) => prepared.push(p),
                Err(reason) => rejected.push(Rejection { index, id: item.id, reason }),
            }
        }
        rejected.sort_by_key(|r| r.index);
        let accepted = prepared.len();
        let seqs = self.collection.upsert(prepared)?;
        Ok(GroupOutcome { accepted, rejected, last_seq: seqs.last().copied() })
    }

    fn validate(&self, item: &IngestItem) -> Result<(), String> {
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
            let spec = self.collection.spec(space).map_err(|e| e.to_string())?;
            if !seen.insert(space) {
                return Err(format!("two vectors for space {space:?}"));
            }
            spec.metric.prepare(spec.dim, values).map_err(|e| format!("vector for space {space:?}: {e}"))?;
        }
        Ok(())
    }

    /// Runs the encoders for the spaces items did not bring. Titles and photos of the whole
    /// group go through the models in one batch each; if a batch fails (one corrupt photo), the
    /// group is retried item by item so only the bad item is rejected.
    fn encode_missing(&self, items: &[(usize, IngestItem)]) -> Vec<Result<HashMap<String, Vec<f32>>, String>> {
        let Some(enc) = &self.encoders else {
            return items.iter().map(|_| Ok(HashMap::new())).collect();
        };
        let fusion = &self.collection.config().fusion;
        let has_shared = self.collection.spec(SHARED_SPACE).is_ok();
        let has_visual = self.collection.spec(VISUAL_SPACE).is_ok();
        let plans: Vec<EncodePlan> = items
            .iter()
            .map(|(_, it)| {
                let want_shared = has_shared && !it.vectors.iter().any(|(s, _)| s == SHARED_SPACE);
                let want_visual = has_visual && !it.images.is_empty() && !it.vectors.iter().any(|(s, _)| s == VISUAL_SPACE);
                let text = if fusion.include_description && !it.description.trim().is_empty() {
                    format!("{}. {}", it.title.trim(), it.description.trim())
                } else {
                    it.title.trim().to_string()
                };
                let text = (want_shared && !text.is_empty()).then_some(text);
                let photos = if want_shared || want_visual { it.images.len() } else { 0 };
                EncodePlan { want_shared, want_visual, text, photos }
            })
            .collect();

        let texts: Vec<&str> = plans.iter().filter_map(|p| p.text.as_deref()).collect();
        let photos: Vec<&[u8]> = items.iter().zip(&plans).flat_map(|((_, it), p)| it.images[..p.photos].iter().map(Vec::as_slice)).collect();
        let batched = (|| -> Result<(Vec<Vec<f32>>, Vec<ImageVectors>), crate::encode::EncodeError> {
            let t = if texts.is_empty() { Vec::new() } else { enc.embed_texts(&texts)? };
            let p = if photos.is_empty() { Vec::new() } else { enc.embed_images(&photos)? };
            Ok((t, p))
        })();
        match batched {
            Ok((text_vecs, photo_vecs)) if text_vecs.len() == texts.len() && photo_vecs.len() == photos.len() => {
                let (mut ti, mut pi) = (0, 0);
                items
                    .iter()
                    .zip(&plans)
                    .map(|((_, it), plan)| {
                        let text = plan.text.as_ref().map(|_| {
                            ti += 1;
                            text_vecs[ti - 1].as_slice()
                        });
                        let imgs = &photo_vecs[pi..pi + plan.photos];
                        pi += plan.photos;
                        Ok(self.fuse(plan, text, imgs, it))
                    })
                    .collect()
            }
            _ if items.len() > 1 => items.iter().map(|one| self.encode_missing(std::slice::from_ref(one)).remove(0)).collect(),
            Ok(_) => vec![Err("encoder returned the wrong number of vectors".into())],
            Err(e) => vec![Err(e.to_string())],
        }
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
            return Err(if self.encoders.is_some() {
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
