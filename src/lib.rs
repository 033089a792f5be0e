//! mmsearch: multimodal product search.
//!
//! Request flow (one direction): `api` → `search` (validate, `encode`, `fuse`) →
//! `collection` (index search over `mmsearch_index` generations + mutable layer, filters) →
//! `store` (hydrate) → `api`. Writes: `api` → `ingest` (`encode`, `fuse`) → `collection`
//! (`store` first, then the in-memory layers).

pub mod api;
pub mod cli;
pub mod collection;
pub mod config;
pub mod encode;
pub mod fuse;
pub mod ingest;
pub mod search;
pub mod store;
pub mod telemetry;
