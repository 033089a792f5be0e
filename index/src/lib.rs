//! mmsearch-index: the vector index of mmsearch, independent of the API, models and store.
//!
//! - [`metric`]: cosine / L2, vector preparation, exact kernels. Scores are "higher is better".
//! - [`graph`]: an hnsw_rs graph (build in parallel, search with a filter, dump, mmap reload).
//! - [`vectors`]: a generation's vectors sorted by id, mmapped, for lookups and exact scans.
//! - [`generation`]: immutable on-disk snapshots published by an atomic rename.
//! - [`flat`]: the mutable layer for writes newer than the current generation.
//!
//! Ids are `u64` write sequence numbers assigned by the caller, unique per stored version,
//! which is what hnsw_rs needs (it has no delete and its mmap reload looks vectors up by id).

pub mod error;
pub mod flat;
pub mod generation;
pub mod graph;
pub mod metric;
pub mod synthetic;
pub mod topk;
pub mod vectors;

pub use error::{IndexError, Result};
pub use flat::FlatLayer;
pub use generation::{BaseSegment, Generation, GenerationWriter, SpaceSpec};
pub use graph::{HnswGraph, HnswParams};
pub use metric::Metric;
pub use topk::{Scored, TopK};
pub use vectors::VectorFile;
