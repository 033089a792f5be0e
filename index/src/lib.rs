//! mmsearch-index: the vector index of mmsearch, independent of the API, models and store.
//!
//! - [`metric`]: cosine / L2, vector preparation, exact kernels. Scores are "higher is better".
//! - [`graph`]: an hnsw_rs graph (build in parallel, search with a filter, dump, mmap reload).
//! - [`graph_file`]: the flat, memory-mapped graph format (ids, 64-byte vector rows, layer-0
//!   table, CSR upper layers); [`search`]: the beam search over it; [`kernel`]: distance
//!   kernels chosen once from the CPU's features; [`export`]: hnsw_rs graph → graph file.
//! - [`vectors`]: a generation's vectors sorted by id, mmapped, for lookups and exact scans.
//! - [`generation`]: immutable on-disk snapshots published by an atomic rename; a generation
//!   holds one [`BaseSegment`] per space.
//! - [`flat`]: the mutable layer for writes newer than the current generation.
//! - [`layer`]: the [`Layer`] trait both of those implement (search, look up, count).
//! - [`plan`](mod@plan): the query planner. [`plan()`](fn@plan) turns k, the requested `ef` and the filter's
//!   estimated cardinality into ordered steps (graph, widened graph, exact scan); every `ef`
//!   rule and every exact-vs-graph decision lives there.
//! - [`snapshot`]: [`SpaceView`], one space's layers read together, which executes a plan
//!   and reports which step answered.
//!
//! A search: `plan(&config, &input)` → `SpaceView::new(metric, layers).execute(&plan, query,
//! accept, candidates)`. The caller owns liveness and filtering (its catalogue): `accept`
//! says whether an id counts, `candidates` lists those that do when an exact scan needs them.
//!
//! Ids are `u64` write sequence numbers assigned by the caller, unique per stored version,
//! which is what hnsw_rs needs (it has no delete and its mmap reload looks vectors up by id).

pub mod builder;
pub mod error;
pub mod export;
pub mod flat;
pub mod generation;
pub mod graph;
pub mod graph_file;
pub mod kernel;
pub mod layer;
pub mod metric;
pub mod plan;
pub mod search;
pub mod snapshot;
pub mod synthetic;
pub mod topk;
pub mod vectors;

pub use error::{IndexError, Result};
pub use flat::FlatLayer;
pub use generation::{BaseSegment, Generation, GenerationWriter, SpaceSpec};
pub use graph::{HnswGraph, HnswParams};
pub use graph_file::GraphFile;
pub use kernel::{Isa, Kernel};
pub use layer::Layer;
pub use metric::Metric;
pub use plan::{plan, Matching, Path, Plan, PlanInput, PlannerConfig, Step};
pub use search::FlatGraph;
pub use snapshot::{Outcome, SpaceView};
pub use topk::{Scored, TopK};
pub use vectors::VectorFile;
