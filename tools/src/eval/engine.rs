//! An embedded engine: the server's own collection, ingest and search code over a temporary
//! data directory, without the gRPC layer. What is measured here is what a client of the server
//! gets (same fusion, same batching, same index and filters), minus transport.

use super::EvalError;
use mmsearch::collection::RebuildPhase;
use mmsearch::config::Config;
use mmsearch::encode::Encoders;
use mmsearch::model::{FilterSpec, NewItem};
use mmsearch::pipeline::{
    PipelineError, Query, SearchMode, SearchRequest, SearchResult, SpaceRole,
};
use std::sync::Arc;

/// Items per `write_group` call: large enough that the batcher fills its batches.
const GROUP: usize = 64;

pub struct Engine {
    engine: mmsearch::engine::Engine,
    // Dropped last: RocksDB and the mmapped generation live in it.
    _dir: tempfile::TempDir,
}

impl Engine {
    /// A fresh, empty engine with `config` (its `data_dir` is replaced by a temporary one).
    /// Must be called inside a tokio runtime.
    pub async fn open(config: &Config, encoders: Arc<Encoders>) -> Result<Engine, EvalError> {
        let dir = tempfile::Builder::new()
            .prefix("mmsearch-eval-")
            .tempdir()
            .map_err(|e| EvalError::Io(e.to_string()))?;
        let mut config = config.engine();
        config.data_dir = dir.path().to_path_buf();
        let engine = mmsearch::engine::Engine::open(config, Some(encoders))
            .await
            .map_err(|e| EvalError::Engine(e.to_string()))?;
        Ok(Engine { engine, _dir: dir })
    }

    /// Ingests every item; any rejection is an error (the data sets are meant to be clean).
    pub async fn ingest(&self, items: Vec<NewItem>) -> Result<(), EvalError> {
        let mut items = items;
        while !items.is_empty() {
            let rest = items.split_off(items.len().min(GROUP));
            let group = std::mem::replace(&mut items, rest);
            let out = self
                .engine
                .ingester()
                .write_group(group)
                .await
                .map_err(|e| EvalError::Engine(e.to_string()))?;
            if let Some(r) = out.rejected.first() {
                return Err(EvalError::Engine(format!(
                    "{} item(s) rejected, first {:?}: {}",
                    out.rejected.len(),
                    r.id,
                    r.reason
                )));
            }
        }
        Ok(())
    }

    /// Folds everything into an HNSW generation (as the server's automatic or admin rebuild
    /// does), so the searches go through the graph rather than the mutable layer's exact scan.
    pub async fn rebuild(&self) -> Result<(), EvalError> {
        let mut rx = self.engine.collection().rebuild();
        loop {
            let p = rx.borrow_and_update().clone();
            match p.phase {
                RebuildPhase::Done => return Ok(()),
                RebuildPhase::Failed => {
                    return Err(EvalError::Engine(format!(
                        "rebuild failed: {}",
                        p.error.unwrap_or_default()
                    )))
                }
                _ => {}
            }
            if rx.changed().await.is_err() {
                // Sender gone: the final state is whatever it last published.
                let p = rx.borrow().clone();
                return match p.phase {
                    RebuildPhase::Done => Ok(()),
                    _ => Err(EvalError::Engine(format!(
                        "rebuild ended in phase {}",
                        p.phase.as_str()
                    ))),
                };
            }
        }
    }

    pub async fn search(
        &self,
        query: Query,
        top_k: usize,
        space: Option<&str>,
        filter: FilterSpec,
    ) -> Result<SearchResult, PipelineError> {
        let request = SearchRequest {
            filter,
            space: space.map(str::to_string),
            ..Engine::vector_request(query, top_k)
        };
        self.engine.searcher().search(request).await
    }

    /// The suites measure the vector towers and spaces; HYBRID and LEXICAL are compared by
    /// `modes`. Text and voice would otherwise default to HYBRID (#12).
    pub fn vector_request(query: Query, top_k: usize) -> SearchRequest {
        SearchRequest {
            mode: Some(SearchMode::Vector),
            ..SearchRequest::new(query, top_k as u32)
        }
    }

    /// A request as a client would send it (mode, fusion, filter…).
    pub async fn request(&self, request: SearchRequest) -> Result<SearchResult, PipelineError> {
        self.engine.searcher().search(request).await
    }

    /// Ids of the hits, best first.
    pub async fn ranked(&self, query: Query, top_k: usize) -> Result<Vec<String>, EvalError> {
        let r = self
            .search(query, top_k, None, FilterSpec::default())
            .await
            .map_err(|e| EvalError::Search(e.to_string()))?;
        Ok(r.hits.into_iter().map(|h| h.id).collect())
    }

    /// The name of the space with `role` (the suites compare spaces by role).
    pub fn space(&self, role: SpaceRole) -> Result<String, EvalError> {
        self.engine
            .roles()
            .get(role)
            .map(|s| s.name.clone())
            .ok_or_else(|| EvalError::Engine(format!("no space has role {}", role.as_str())))
    }
}
