//! The query pipeline: validate → encode → index search → filter/rerank → hydrate.
//!
//! Text and voice queries search the `shared` space. Image queries search both `shared`
//! (the photo bridged into the text space) and `visual` (raw image features) and merge the
//! two candidate lists with [`crate::fuse::merge_image_hits`]. Vector queries search the space
//! they name; item queries use the item's own stored vector ("more like this") and exclude it.

mod filter;

pub use filter::FilterSpec;

use crate::collection::{Collection, CollectionError, Entry};
use crate::config::Limits;
use crate::encode::{EncodeError, Encoders};
use crate::store::StoredItem;
use mmsearch_index::{Scored, SpaceSpec};
use std::sync::Arc;
use std::time::Instant;

pub const SHARED_SPACE: &str = "shared";
pub const VISUAL_SPACE: &str = "visual";

#[derive(Debug, Clone)]
pub enum Query {
    Text(String),
    Image(Vec<u8>),
    Audio(Vec<u8>),
    ItemId(String),
    Vector { space: String, values: Vec<f32> },
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: Option<Query>,
    pub top_k: u32,
    pub offset: u32,
    pub filter: FilterSpec,
    pub min_score: f32,
    /// Space for item queries; default `shared`.
    pub space: Option<String>,
    pub ef: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct SearchHit {
    pub id: String,
    pub score: f32,
    pub item: StoredItem,
}

#[derive(Debug, Clone, Default)]
pub struct Timing {
    pub encode_us: u64,
    pub search_us: u64,
    pub hydrate_us: u64,
}

#[derive(Debug, Clone)]
pub struct SearchResult {
    pub hits: Vec<SearchHit>,
    pub transcript: Option<String>,
    pub timing: Timing,
    pub exact: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Collection(#[from] CollectionError),
    #[error("internal: {0}")]
    Internal(String),
}

pub struct Searcher {
    collection: Arc<Collection>,
    encoders: Option<Arc<Encoders>>,
}

struct Candidates {
    scored: Vec<Scored>,
    transcript: Option<String>,
    exact: bool,
}

impl Searcher {
    pub fn new(collection: Arc<Collection>, encoders: Option<Arc<Encoders>>) -> Searcher {
        Searcher { collection, encoders }
    }

    pub fn collection(&self) -> &Arc<Collection> {
        &self.collection
    }

    fn encoders(&self, what: &str) -> Result<Arc<Encoders>, SearchError> {
        self.encoders.clone().ok_or_else(|| {
            SearchError::Unimplemented(format!("{what} queries need the encoders; this server runs without models"))
        })
    }

    pub async fn search(&self, req: SearchRequest) -> Result<SearchResult, SearchError> {
        self.search_until(req, None).await
    }

    /// Like [`Self::search`], but model work that has not started by `deadline` is skipped:
    /// a caller that has given up must not keep an encoder busy (queued requests would
    /// otherwise run long after their clients left).
    pub async fn search_until(&self, req: SearchRequest, deadline: Option<Instant>) -> Result<SearchResult, SearchError> {
        validate_request(&req, &self.collection.config().limits)?;
        let window = (req.offset + req.top_k) as usize;
        let ef = req.ef.map(|e| e as usize).unwrap_or(self.collection.config().index.ef_search).max(window);
        let filter = (!req.filter.is_empty()).then_some(req.filter.clone());
        let mut timing = Timing::default();

        let started = Instant::now();
        let query = req.query.clone().ok_or_else(|| SearchError::Internal("validated query vanished".into()))?;
        let encoded = self.encode(query, req.space.as_deref(), deadline).await?;
        timing.encode_us = started.elapsed().as_micros() as u64;
        crate::telemetry::observe_stage("encode", started.elapsed());

        let started = Instant::now();
        let collection = self.collection.clone();
        let candidates = tokio::task::spawn_blocking(move || -> Result<Candidates, SearchError> {
            let predicate = filter.as_ref().map(|f| move |e: &Entry| f.matches(e));
            let pred_ref: Option<&(dyn Fn(&Entry) -> bool + Sync)> =
                predicate.as_ref().map(|p| p as &(dyn Fn(&Entry) -> bool + Sync));
            run_search(&collection, encoded, window, ef, pred_ref)
        })
        .await
        .map_err(|e| SearchError::Internal(format!("search task failed: {e}")))??;
        timing.search_us = started.elapsed().as_micros() as u64;
        crate::telemetry::observe_stage("search", started.elapsed());

        let started = Instant::now();
        let page: Vec<Scored> = candidates
            .scored
            .into_iter()
            .skip(req.offset as usize)
            .filter(|s| s.score >= req.min_score)
            .take(req.top_k as usize)
            .collect();
        let hits = self.hydrate(&page).await?;
        timing.hydrate_us = started.elapsed().as_micros() as u64;
        crate::telemetry::observe_stage("hydrate", started.elapsed());
        Ok(SearchResult { hits, transcript: candidates.transcript, timing, exact: candidates.exact })
    }

    async fn encode(&self, query: Query, item_space: Option<&str>, deadline: Option<Instant>) -> Result<Encoded, SearchError> {
        match query {
            Query::Vector { space, values } => {
                let prepared = prepare_query_vector(self.collection.specs(), &space, &values)?;
                Ok(Encoded::Single { space, vector: prepared, exclude: None, transcript: None })
            }
            Query::ItemId(id) => {
                let space = item_space.filter(|s| !s.is_empty()).unwrap_or(SHARED_SPACE).to_string();
                let collection = self.collection.clone();
                let space2 = space.clone();
                let (seq, vector) = tokio::task::spawn_blocking(move || collection.item_vector(&id, &space2))
                    .await
                    .map_err(|e| SearchError::Internal(e.to_string()))??;
                Ok(Encoded::Single { space, vector, exclude: Some(seq), transcript: None })
            }
            Query::Text(text) => {
                let enc = self.encoders("text")?;
                let vector = blocking(deadline, move || enc.embed_queries(&[text.as_str()])).await?;
                let vector = first(vector)?;
                Ok(Encoded::Single { space: SHARED_SPACE.into(), vector: self.prepare(SHARED_SPACE, vector)?, exclude: None, transcript: None })
            }
            Query::Audio(bytes) => {
                let enc = self.encoders("voice")?;
                let (transcript, vector) = blocking(deadline, move || {
                    let t = enc.transcribe(&bytes)?;
                    if t.text.trim().is_empty() {
                        return Err(EncodeError::InvalidInput("no speech recognised in the audio".into()));
                    }
                    check_deadline(deadline)?;
                    let v = enc.embed_queries(&[t.text.trim()])?;
                    Ok((t.text, v))
                })
                .await?;
                let vector = self.prepare(SHARED_SPACE, first(vector)?)?;
                Ok(Encoded::Single { space: SHARED_SPACE.into(), vector, exclude: None, transcript: Some(transcript) })
            }
            Query::Image(bytes) => {
                let enc = self.encoders("image")?;
                let vectors = blocking(deadline, move || enc.embed_images(&[bytes.as_slice()])).await?;
                let v = vectors.into_iter().next().ok_or_else(|| SearchError::Internal("encoder returned nothing".into()))?;
                let shared = self.prepare(SHARED_SPACE, v.shared)?;
                let visual = match v.visual {
                    Some(vis) if self.collection.spec(VISUAL_SPACE).is_ok() => Some(self.prepare(VISUAL_SPACE, vis)?),
                    _ => None,
                };
                Ok(Encoded::Image { shared, visual })
            }
        }
    }

    fn prepare(&self, space: &str, v: Vec<f32>) -> Result<Vec<f32>, SearchError> {
        let spec = self.collection.spec(space)?;
        spec.metric.prepare(spec.dim, &v).map_err(|e| {
            SearchError::Internal(format!("encoder output does not fit space {space:?}: {e} (check [[spaces]] against the models)"))
        })
    }

    async fn hydrate(&self, page: &[Scored]) -> Result<Vec<SearchHit>, SearchError> {
        let collection = self.collection.clone();
        let page = page.to_vec();
        tokio::task::spawn_blocking(move || -> Result<Vec<SearchHit>, SearchError> {
            let named: Vec<(Scored, String)> = {
                let state = collection.state().read();
                page.iter().filter_map(|s| state.catalog.entry(s.id).map(|e| (*s, e.id.to_string()))).collect()
            };
            let keys: Vec<&str> = named.iter().map(|(_, id)| id.as_str()).collect();
            let items = collection.get_many(&keys)?;
            Ok(named
                .into_iter()
                .zip(items)
                // Replaced or deleted between search and hydration: the hit is stale, drop it.
                .filter_map(|((scored, id), item)| match item {
                    Some(item) if item.seq == scored.id => Some(SearchHit { id, score: scored.score, item }),
                    _ => None,
                })
                .collect())
        })
        .await
        .map_err(|e| SearchError::Internal(e.to_string()))?
    }
}

/// Checks a request against the configured limits before any encoder or index work; needs no
/// engine, so the API layer's input handling can be exercised (and fuzzed) on its own.
pub fn validate_request(req: &SearchRequest, limits: &Limits) -> Result<(), SearchError> {
    if req.top_k == 0 {
        return Err(SearchError::InvalidArgument("top_k must be at least 1".into()));
    }
    if req.top_k > limits.max_top_k {
        return Err(SearchError::InvalidArgument(format!("top_k {} exceeds the limit {}", req.top_k, limits.max_top_k)));
    }
    if req.offset as u64 + req.top_k as u64 > limits.max_window as u64 {
        return Err(SearchError::InvalidArgument(format!(
            "offset + top_k = {} exceeds the limit {}",
            req.offset as u64 + req.top_k as u64,
            limits.max_window
        )));
    }
    if let Some(ef) = req.ef.filter(|&ef| ef > limits.max_ef) {
        return Err(SearchError::InvalidArgument(format!("ef {ef} exceeds the limit {}", limits.max_ef)));
    }
    // NEG_INFINITY means "no threshold" (the wire's unset 0.0 maps to it).
    if req.min_score.is_nan() || req.min_score == f32::INFINITY {
        return Err(SearchError::InvalidArgument("min_score must be a finite number".into()));
    }
    req.filter.validate().map_err(SearchError::InvalidArgument)?;
    match &req.query {
        None => Err(SearchError::InvalidArgument("empty query: set one of text, image, audio, item_id, vector".into())),
        Some(Query::Text(t)) if t.trim().is_empty() => Err(SearchError::InvalidArgument("text query is empty".into())),
        Some(Query::Text(t)) if t.chars().count() > limits.max_text_chars => Err(SearchError::InvalidArgument(
            format!("text query is longer than {} characters", limits.max_text_chars),
        )),
        Some(Query::Image(b)) if b.is_empty() => Err(SearchError::InvalidArgument("image query is empty".into())),
        Some(Query::Audio(b)) if b.is_empty() => Err(SearchError::InvalidArgument("audio query is empty".into())),
        Some(Query::ItemId(id)) if id.is_empty() => Err(SearchError::InvalidArgument("item_id is empty".into())),
        Some(Query::Vector { values, .. }) if values.is_empty() => {
            Err(SearchError::InvalidArgument("vector query has no values".into()))
        }
        _ => Ok(()),
    }
}

/// A client-supplied query vector, checked against its space and normalised as the space's
/// metric wants it.
pub fn prepare_query_vector(specs: &[SpaceSpec], space: &str, values: &[f32]) -> Result<Vec<f32>, SearchError> {
    let spec = specs
        .iter()
        .find(|s| s.name == space)
        .ok_or_else(|| CollectionError::UnknownSpace(space.to_string()))?;
    spec.metric
        .prepare(spec.dim, values)
        .map_err(|e| SearchError::InvalidArgument(format!("vector for space {space:?}: {e}")))
}

enum Encoded {
    Single { space: String, vector: Vec<f32>, exclude: Option<u64>, transcript: Option<String> },
    Image { shared: Vec<f32>, visual: Option<Vec<f32>> },
}

fn run_search(
    collection: &Collection,
    encoded: Encoded,
    window: usize,
    ef: usize,
    filter: Option<&(dyn Fn(&Entry) -> bool + Sync)>,
) -> Result<Candidates, SearchError> {
    match encoded {
        Encoded::Single { space, vector, exclude, transcript } => {
            let out = collection.search(&space, &vector, window, ef, filter, exclude)?;
            Ok(Candidates { scored: out.hits, transcript, exact: out.exact })
        }
        Encoded::Image { shared, visual } => {
            let a = collection.search(SHARED_SPACE, &shared, window, ef, filter, None)?;
            let Some(visual) = visual else {
                return Ok(Candidates { scored: a.hits, transcript: None, exact: a.exact });
            };
            let b = collection.search(VISUAL_SPACE, &visual, window, ef, filter, None)?;
            let alpha = collection.config().fusion.image_query_alpha;
            let merged = crate::fuse::merge_image_hits(&a.hits, &b.hits, alpha, window);
            Ok(Candidates { scored: merged, transcript: None, exact: a.exact && b.exact })
        }
    }
}

/// Runs model work on the blocking pool unless the deadline passed while it waited there.
async fn blocking<T: Send + 'static>(
    deadline: Option<Instant>,
    f: impl FnOnce() -> Result<T, EncodeError> + Send + 'static,
) -> Result<T, SearchError> {
    tokio::task::spawn_blocking(move || {
        check_deadline(deadline)?;
        f()
    })
    .await
    .map_err(|e| SearchError::Internal(format!("encoder task failed: {e}")))?
    .map_err(SearchError::from)
}

fn check_deadline(deadline: Option<Instant>) -> Result<(), EncodeError> {
    match deadline {
        Some(d) if Instant::now() >= d => Err(EncodeError::DeadlineExceeded),
        _ => Ok(()),
    }
}

fn first(v: Vec<Vec<f32>>) -> Result<Vec<f32>, SearchError> {
    v.into_iter().next().ok_or_else(|| SearchError::Internal("encoder returned no vector".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_request(ef: Option<u32>) -> SearchRequest {
        SearchRequest {
            query: Some(Query::Text("shoes".into())),
            top_k: 10,
            offset: 0,
            filter: FilterSpec::default(),
            min_score: f32::NEG_INFINITY,
            space: None,
            ef,
        }
    }

    #[test]
    fn ef_is_bounded() {
        let limits = Limits::default();
        assert!(validate_request(&text_request(Some(limits.max_ef)), &limits).is_ok());
        assert!(validate_request(&text_request(None), &limits).is_ok());
        // u32::MAX used to reach hnsw_rs, which allocates the beam with capacity ef
        let e = validate_request(&text_request(Some(u32::MAX)), &limits).unwrap_err();
        assert!(matches!(e, SearchError::InvalidArgument(ref m) if m.contains("ef")), "{e}");
    }

    #[test]
    fn query_vector_is_checked_against_its_space() {
        let specs = [SpaceSpec { name: "c".into(), dim: 2, metric: mmsearch_index::Metric::Cosine }];
        assert_eq!(prepare_query_vector(&specs, "c", &[3.0, 4.0]).unwrap(), vec![0.6, 0.8]);
        assert!(matches!(prepare_query_vector(&specs, "x", &[1.0, 0.0]), Err(SearchError::Collection(_))));
        assert!(matches!(prepare_query_vector(&specs, "c", &[1.0]), Err(SearchError::InvalidArgument(_))));
    }
}
