//! The request pipelines over the collection: search (validate → encode → search per space →
//! merge → page → hydrate), ingest (validate → encode what is missing → fuse → durable
//! write) and recommend (behaviour in; "for you", "similar", personalised search out). Space roles are bound here ([`spaces`]), so encoders and the index know no names.

pub mod ingest;
pub mod recommend;
pub mod reembed;
pub mod search;
pub mod spaces;

pub use ingest::{GroupOutcome, IngestConfig, Ingester, Rejection};
pub use recommend::Recommender;
pub use search::{
    Explanation, FusionChoice, LexicalScore, Query, SearchHit, SearchMode, SearchRequest,
    SearchResult, Searcher, SpaceScore, Timing, VideoParts,
};
pub use spaces::{Roles, SpaceConfig, SpaceRole};

use crate::collection::CollectionError;
use crate::encode::EncodeError;
use serde::{Deserialize, Serialize};

/// The pipelines' error type; `server::status` maps it to gRPC codes.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Collection(#[from] CollectionError),
    #[error("internal: {0}")]
    Internal(String),
}

/// Request limits the pipelines check before any encoder or index work (`[limits]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryLimits {
    pub max_top_k: u32,
    /// offset + top_k may not exceed this.
    pub max_window: u32,
    pub max_text_chars: usize,
    pub max_delete_ids: usize,
    /// Largest `ef` a request may ask for (the planner's cap).
    pub max_ef: u32,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_top_k: 1000,
            max_window: 10_000,
            max_text_chars: 2_000,
            max_delete_ids: 10_000,
            max_ef: 10_000,
        }
    }
}

impl QueryLimits {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_top_k == 0 || self.max_window < self.max_top_k {
            return Err("limits: need 0 < max_top_k <= max_window".into());
        }
        if self.max_ef == 0 {
            return Err("limits.max_ef must be > 0".into());
        }
        Ok(())
    }
}

/// Runs blocking work (index, store) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PipelineError> + Send + 'static,
) -> Result<T, PipelineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PipelineError::Internal(format!("blocking task failed: {e}")))?
}
