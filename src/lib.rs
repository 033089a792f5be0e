//! mmsearch: multimodal product search.
//!
//! Layers, lowest first (each knows only those before it; `tests/architecture.rs` checks the
//! imports against ARCHITECTURE.md):
//! `model` (item, entry, filter) → `store` (RocksDB) and `lexical` (tantivy BM25 parts) →
//! `collection` (live state over `mmsearch_index` generations, their lexical parts and the
//! mutable layer) → `encode` (ONNX encoders) and `fusion` (vector math, hybrid fusion) and
//! `recommend` (recommendation models) → `pipeline` (search, ingest, recommend; space roles) →
//! `engine` (wires it all) →
//! `server` (gRPC) → `cli`. Beside them: `pb` (wire types), `client` (gRPC client helpers),
//! `telemetry` (metrics, probes), `config` (the file's sections, read only by the CLI).

pub mod cli;
pub mod client;
pub mod collection;
pub mod config;
pub mod encode;
pub mod engine;
pub mod fusion;
pub mod lexical;
pub mod model;
pub mod pb;
pub mod pipeline;
pub mod recommend;
pub mod server;
pub mod store;
pub mod telemetry;
