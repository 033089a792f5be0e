//! The write path: validate → encode what is missing → fuse → prepare → durable write.
//!
//! An item may bring precomputed vectors for any configured space; the encoders fill the
//! text-role and visual-role spaces it does not bring (from its text and photos). Texts and
//! photos go through the dynamic batcher (`encode::batcher`), so concurrent streams share model
//! calls. Videos are decoded (FFmpeg) and their keyframes encoded in one call per video on the
//! blocking pool; their transcripts join the batcher like titles. A bad item is rejected with a reason and never aborts the rest of its group.

use super::spaces::Roles;
use super::{blocking, PipelineError};
use crate::collection::{Collection, PreparedItem};
use crate::encode::batcher::{BatcherConfig, EncodeBatcher};
use crate::encode::{Encoders, ImageVectors, VideoVectors};
use crate::fusion::{fuse_item, FusionConfig, ItemEvidence};
use crate::model::NewItem;
use mmsearch_index::SpaceSpec;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `[ingest]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Items written (and WAL-synced) together when a stream has them ready.
    pub group_commit_max: usize,
    /// Dynamic batching of encoder calls across concurrent ingest streams.
    pub batch: BatcherConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            group_commit_max: 256,
            batch: Default::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Position in the group.
    pub index: usize,
    pub id: String,
    pub reason: String,
}

pub struct GroupOutcome {
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
    pub last_seq: Option<u64>,
}

pub struct Ingester {
    collection: Arc<Collection>,
    batcher: Option<EncodeBatcher>,
    encoders: Option<Arc<Encoders>>,
    roles: Roles,
    fusion: FusionConfig,
}

/// The role spaces an item still needs vectors for.
struct Wanted {
    text: Option<SpaceSpec>,
    visual: Option<SpaceSpec>,
}

impl Ingester {
    /// Must be called inside a tokio runtime (the batcher's workers are tasks).
    pub fn new(
        collection: Arc<Collection>,
        encoders: Option<Arc<Encoders>>,
        roles: Roles,
        fusion: FusionConfig,
        batching: &BatcherConfig,
    ) -> Ingester {
        let batcher = encoders.clone().map(|e| EncodeBatcher::spawn(e, batching));
        Ingester {
            collection,
            batcher,
            encoders,
            roles,
            fusion,
        }
    }

    /// Writes one group. Returns once every accepted item is durable (WAL-synced).
    pub async fn write_group(&self, items: Vec<NewItem>) -> Result<GroupOutcome, PipelineError> {
        let mut rejected = Vec::new();
        let mut valid: Vec<(usize, NewItem)> = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            match self.validate(&item) {
                Ok(()) => valid.push((index, item)),
                Err(reason) => rejected.push(Rejection {
                    index,
                    id: item.item.id.clone(),
                    reason,
                }),
            }
        }
        let first_photos: Vec<Option<Vec<u8>>> = valid
            .iter()
            .map(|(_, item)| item.images.first().cloned())
            .collect();
        let (encoded, thumbnails) = futures::join!(
            futures::future::join_all(valid.iter_mut().map(|(_, item)| self.encode_missing(item))),
            futures::future::join_all(first_photos.into_iter().map(make_thumbnail)),
        );
        let mut prepared = Vec::with_capacity(valid.len());
        for (((index, item), enc), thumbnail) in valid.into_iter().zip(encoded).zip(thumbnails) {
            let id = item.item.id.clone();
            match enc.and_then(|extra| self.prepare(item, extra, thumbnail)) {
                Ok(p) => prepared.push(p),
                Err(reason) => rejected.push(Rejection { index, id, reason }),
            }
        }
        rejected.sort_by_key(|r| r.index);
        let accepted = prepared.len();
        let collection = self.collection.clone();
        let seqs = blocking(move || Ok(collection.upsert(prepared)?)).await?;
        Ok(GroupOutcome {
            accepted,
            rejected,
            last_seq: seqs.last().copied(),
        })
    }

    /// Checks one item before any encoder work: its fields, its fusion weights, its vectors.
    pub fn validate(&self, new: &NewItem) -> Result<(), String> {
        validate_item(new, self.collection.specs(), &self.fusion)
    }

    /// Encodes what the item did not bring. Photo bytes are taken out of the item: they are
    /// never stored, only their vectors.
    async fn encode_missing(&self, new: &mut NewItem) -> Result<Vec<(String, Vec<f32>)>, String> {
        let Some(batcher) = &self.batcher else {
            return Ok(Vec::new());
        };
        let brought = |s: &SpaceSpec| new.vectors.iter().any(|(name, _)| *name == s.name);
        let wanted = Wanted {
            text: self.roles.text().filter(|s| !brought(s)).cloned(),
            visual: self
                .roles
                .visual()
                .filter(|s| !brought(s) && !(new.images.is_empty() && new.videos.is_empty()))
                .cloned(),
        };
        if wanted.text.is_none() && wanted.visual.is_none() {
            return Ok(Vec::new());
        }
        let text = self
            .fusion
            .item_text(&new.item.title, &new.item.description);
        let text_job = async {
            match wanted.text.is_some() && !text.is_empty() {
                true => batcher
                    .embed_text(text)
                    .await
                    .map(Some)
                    .map_err(|e| format!("title: {e}")),
                false => Ok(None),
            }
        };
        let photos = std::mem::take(&mut new.images);
        let photo_jobs = futures::future::join_all(photos.into_iter().enumerate().map(
            |(i, bytes)| async move {
                batcher
                    .embed_image(bytes)
                    .await
                    .map_err(|e| format!("photo {i}: {e}"))
            },
        ));
        let videos = std::mem::take(&mut new.videos);
        let video_jobs = futures::future::join_all(
            videos
                .into_iter()
                .enumerate()
                .map(|(i, bytes)| self.encode_video(i, bytes)),
        );
        let (text_vec, images, videos) = futures::join!(text_job, photo_jobs, video_jobs);
        let text_vec = text_vec?;
        let images: Vec<ImageVectors> = images.into_iter().collect::<Result<_, _>>()?;
        let videos: Vec<(VideoVectors, Option<Vec<f32>>)> =
            videos.into_iter().collect::<Result<_, _>>()?;
        let frames = || videos.iter().flat_map(|(v, _)| v.frames.iter());
        let weights = self
            .fusion
            .weights_for(new.item.text_weight, new.item.image_weight)?;
        let evidence = ItemEvidence {
            text: text_vec.as_deref(),
            photo_text_space: images.iter().map(|v| v.shared.as_slice()).collect(),
            photo_visual: images.iter().filter_map(|v| v.visual.as_deref()).collect(),
            frame_text_space: frames().map(|f| f.shared.as_slice()).collect(),
            frame_visual: frames().filter_map(|f| f.visual.as_deref()).collect(),
            speech: videos.iter().filter_map(|(_, s)| s.as_deref()).collect(),
        };
        let fused = fuse_item(&evidence, weights, self.fusion.video_weights());
        let bound = [(wanted.text, fused.text), (wanted.visual, fused.visual)];
        Ok(bound
            .into_iter()
            .filter_map(|(space, v)| Some((space?.name, v?)))
            .collect())
    }

    /// One video: keyframes and soundtrack (blocking pool, FFmpeg as a subprocess), then its
    /// transcript through the batcher's text tower.
    async fn encode_video(
        &self,
        i: usize,
        bytes: Vec<u8>,
    ) -> Result<(VideoVectors, Option<Vec<f32>>), String> {
        let (Some(enc), Some(batcher)) = (self.encoders.clone(), &self.batcher) else {
            return Err(format!("video {i}: this server runs without encoders"));
        };
        let v = tokio::task::spawn_blocking(move || enc.embed_video(&bytes))
            .await
            .map_err(|e| format!("video {i}: {e}"))?
            .map_err(|e| format!("video {i}: {e}"))?;
        let speech = match &v.transcript {
            Some(t) => Some(
                batcher
                    .embed_text(t.text.trim().to_string())
                    .await
                    .map_err(|e| format!("video {i} transcript: {e}"))?,
            ),
            None => None,
        };
        Ok((v, speech))
    }

    fn prepare(
        &self,
        new: NewItem,
        encoded: Vec<(String, Vec<f32>)>,
        thumbnail: Option<Vec<u8>>,
    ) -> Result<PreparedItem, String> {
        let mut vectors = Vec::with_capacity(new.vectors.len() + encoded.len());
        for (space, values) in new.vectors.into_iter().chain(encoded) {
            let spec = self.collection.spec(&space).map_err(|e| e.to_string())?;
            let prepared = spec
                .metric
                .prepare(spec.dim, &values)
                .map_err(|e| format!("space {space:?}: {e}"))?;
            vectors.push((space, prepared));
        }
        if vectors.is_empty() {
            return Err(if self.batcher.is_some() {
                "nothing to index: give a title, a photo, a video or a vector".into()
            } else {
                "no vectors given, and this server runs without encoders".into()
            });
        }
        vectors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(PreparedItem {
            item: new.item,
            vectors,
            thumbnail,
        })
    }
}

/// The first photo's thumbnail for the web pages (blocking pool). A photo that cannot be
/// shrunk leaves the item without one: display is not a reason to refuse a write (the
/// encoders judge the photo for search).
async fn make_thumbnail(photo: Option<Vec<u8>>) -> Option<Vec<u8>> {
    use crate::encode::image::{thumbnail, PreprocessConfig, THUMBNAIL_SIDE};
    let photo = photo?;
    let max_pixels = PreprocessConfig::default().max_pixels;
    match tokio::task::spawn_blocking(move || thumbnail(&photo, THUMBNAIL_SIDE, max_pixels)).await {
        Ok(Ok(jpeg)) => Some(jpeg),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "photo gives no thumbnail");
            None
        }
        Err(_) => None,
    }
}

/// Checks one client item against the write limits, the fusion weights and the configured
/// spaces, before any encoder work. Pure (no engine), so the wire-to-domain path can be
/// exercised (and fuzzed) on its own.
pub fn validate_item(
    new: &NewItem,
    specs: &[SpaceSpec],
    fusion: &FusionConfig,
) -> Result<(), String> {
    new.validate()?;
    fusion.weights_for(new.item.text_weight, new.item.image_weight)?;
    let mut seen = std::collections::HashSet::new();
    for (space, values) in &new.vectors {
        let spec = specs
            .iter()
            .find(|s| s.name == *space)
            .ok_or_else(|| format!("unknown vector space {space:?}"))?;
        if !seen.insert(space) {
            return Err(format!("two vectors for space {space:?}"));
        }
        spec.metric
            .prepare(spec.dim, values)
            .map_err(|e| format!("vector for space {space:?}: {e}"))?;
    }
    Ok(())
}
