//! mmsearch-tools: the measurement tools of mmsearch, outside the server library and using only
//! its public API (and `mmsearch_index`).
//!
//! - [`eval`]: retrieval-quality evaluation over an embedded engine (`mmsearch-eval`,
//!   `tools/tests/eval_quality.rs`).
//! - [`net`]: an authenticated gRPC channel for the load and soak clients.
//! - [`stats`]: the percentile the tools report with, a process's memory.
//!
//! Binaries: `mmsearch-eval`, `mmsearch-load` (closed-loop gRPC load), `mmsearch-scale`
//! (1M-item ingest, rebuild, cold start, index vs pipeline vs gRPC latency), `mmsearch-soak`
//! (mixed load with restarts, checking every acknowledged write). Synthetic vectors come from
//! `mmsearch_index::synthetic`.

pub mod eval;
pub mod net;
pub mod stats;
