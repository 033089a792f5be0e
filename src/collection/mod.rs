//! The collection: the store plus the in-memory state derived from it — the current index
//! generation, the mutable layer of newer writes, and the live catalogue — and the
//! operations that keep them consistent (`write`: upsert/delete; `read`: search, lookups,
//! hydration; `rebuild`; `snapshot`; recovery in [`Collection::open`]).
//!
//! Consistency rules:
//! - Every stored item version has a unique, increasing `seq`; the index knows only seqs.
//! - A generation covers all writes with seq ≤ its `snapshot_seq`; newer vectors are in the
//!   mutable layer. A base vector whose seq is no longer live in the catalogue (deleted or
//!   replaced) is a tombstone: filtered out at search time until the next rebuild drops it.
//! - Writes are serialised by `writer`, made durable in RocksDB first (synced WAL), and only
//!   then applied to the in-memory state, so anything a search can see is already durable.

mod catalog;
mod facets;
mod interactions;
pub mod memory;
mod read;
mod rebuild;
pub mod snapshot;
mod write;

pub use catalog::Catalog;
pub use facets::Facets;
pub use interactions::Recorded;
pub use memory::{MemoryConfig, MemoryUse, OverBudget};
pub use read::{HybridTitle, Hydrated, SearchOutcome};
pub use rebuild::{RebuildPhase, RebuildProgress};
pub use snapshot::{ModelRef, SnapshotError, SnapshotInfo};
pub use write::PreparedItem;

/// The lexical settings, re-exported so the modules above need not know the lexical module.
pub use crate::lexical::LexicalConfig;
use crate::lexical::{self, LexicalError};
use crate::model::{Entry, Version};
use crate::store::{Store, StoreError};
/// The store's own settings and report, re-exported so the modules above need not know it.
pub use crate::store::{StoreConfig, StoreMemory};
use mmsearch_index::generation::{self, Generation};
use mmsearch_index::graph_file::Builder;
use mmsearch_index::{FlatLayer, HnswParams, IndexError, PlannerConfig, SpaceSpec};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CollectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("unknown vector space {0:?}")]
    UnknownSpace(String),
    #[error("item {0:?} not found")]
    NotFound(String),
    #[error("item {id:?} has no vector in space {space:?}")]
    NoVector { id: String, space: String },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(
        "memory budget: {} MiB accounted + {} MiB for this write > {} MiB allowed (limit {} MiB less the rebuild reserve); writes resume once the mutable layer is folded into a generation (a rebuild has been started)",
        .0.accounted >> 20, .0.incoming >> 20, .0.allowed >> 20, .0.limit >> 20
    )]
    OverBudget(OverBudget),
    #[error(transparent)]
    Lexical(#[from] LexicalError),
}

pub type Result<T> = std::result::Result<T, CollectionError>;

/// What a collection needs to open: where its data lives, its vector spaces, how to index them.
#[derive(Debug, Clone)]
pub struct CollectionConfig {
    /// Holds `store/` (RocksDB) and `index/` (generations).
    pub data_dir: PathBuf,
    /// Where snapshots go (outside `data_dir`); clients only name them.
    pub snapshot_root: PathBuf,
    pub spaces: Vec<SpaceSpec>,
    pub index: IndexConfig,
    /// The query planner's settings: `[index]` plus the request limit on `ef`
    /// ([`IndexConfig::planner`]).
    pub planner: PlannerConfig,
    /// RocksDB's memory (`[store]`).
    pub store: StoreConfig,
    /// The process's memory budget (`[memory]`), which writes are admitted against.
    pub memory: MemoryConfig,
    /// How text is matched (`[lexical]`).
    pub lexical: LexicalConfig,
}

/// `[index]`: how generations are built and searched.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// HNSW links per node per layer (hnswlib's M).
    pub m: usize,
    pub ef_construction: usize,
    /// Default search beam width; a request may raise it.
    pub ef_search: usize,
    /// Spaces with fewer vectors than this get no graph: an exact scan is faster.
    pub min_graph_size: usize,
    /// Mutable-layer size (per space) that starts a background rebuild.
    pub max_fresh: usize,
    /// A filter matching at most this many items is answered by an exact scan.
    pub exact_scan_threshold: usize,
    /// Complete generations kept on disk (the one in use is always kept).
    pub keep_generations: usize,
    /// Which builder writes a generation's graph: `native` (this project's hnswlib algorithm)
    /// or `hnsw_rs` (hnsw_rs 0.3.5, exported). Both write the same flat graph file.
    pub builder: Builder,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
            min_graph_size: 256,
            max_fresh: 50_000,
            exact_scan_threshold: 2_000,
            keep_generations: 2,
            builder: Builder::Native,
        }
    }
}

impl IndexConfig {
    pub fn hnsw_params(&self) -> HnswParams {
        HnswParams {
            m: self.m,
            ef_construction: self.ef_construction,
            max_layer: 16,
            builder: self.builder,
        }
    }

    /// The query planner's settings (the index crate owns the rules): this section's beam and
    /// threshold, and `max_ef`, the largest beam a request may ask for (`[limits] max_ef`: the
    /// beam is allocated up front and widened when tombstones crowd it, so an unchecked `ef`
    /// is a memory request).
    pub fn planner(&self, max_ef: usize) -> PlannerConfig {
        PlannerConfig {
            ef_search: self.ef_search,
            max_ef,
            exact_scan_threshold: self.exact_scan_threshold,
            ..PlannerConfig::default()
        }
    }

    /// Checks this section with the `max_ef` its planner will get.
    pub fn validate(&self, max_ef: usize) -> std::result::Result<(), String> {
        self.hnsw_params().validate().map_err(|e| e.to_string())?;
        self.planner(max_ef)
            .validate()
            .map_err(|e| format!("index.ef_search / limits.max_ef: {e}"))
    }
}

impl CollectionConfig {
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }

    pub fn index_dir(&self) -> PathBuf {
        self.data_dir.join("index")
    }

    pub fn snapshot_root(&self) -> PathBuf {
        self.snapshot_root.clone()
    }
}

pub(crate) struct State {
    pub base: Arc<Generation>,
    pub fresh: HashMap<String, FlatLayer>,
    /// The generation's lexical index (its `lexical/` folder) and the RAM index of newer
    /// writes: swapped and trimmed together with `base` and `fresh`.
    pub lexical_base: Arc<lexical::Segment>,
    pub lexical_fresh: Arc<lexical::Fresh>,
    pub catalog: Catalog,
}

pub struct SpaceStats {
    pub spec: SpaceSpec,
    pub base_vectors: usize,
    pub fresh_vectors: usize,
    pub tombstones: usize,
    pub layer_counts: Vec<usize>,
}

pub struct Stats {
    pub items: usize,
    pub generation: u64,
    pub snapshot_seq: u64,
    pub generations_on_disk: Vec<u64>,
    pub spaces: Vec<SpaceStats>,
    pub last_seq: u64,
    pub rebuilding: bool,
    pub mapped_bytes: usize,
    /// What RocksDB holds in memory, by part.
    pub store_memory: StoreMemory,
}

pub struct Collection {
    store: Store,
    specs: Vec<SpaceSpec>,
    config: CollectionConfig,
    state: RwLock<State>,
    /// Next seq to assign; holding the lock serialises writers.
    writer: Mutex<u64>,
    rebuild: rebuild::Coordinator,
    /// Held while generation folders are deleted (rebuild's prune) or linked into a snapshot,
    /// so a snapshot never links a half-deleted generation.
    generation_files: Mutex<()>,
    memory: memory::MemoryBudget,
}

impl Collection {
    /// Opens the store, maps the newest complete generation and replays what came after it.
    pub fn open(config: CollectionConfig) -> Result<Arc<Collection>> {
        let specs = config.spaces.clone();
        if config.data_dir.join(snapshot::RESTORE_MARKER).exists() {
            return Err(SnapshotError::InterruptedRestore(config.data_dir.clone()).into());
        }
        let store = Store::open(&config.store_dir(), &config.store)?;
        let index_dir = config.index_dir();
        std::fs::create_dir_all(&index_dir).map_err(|source| StoreError::Io {
            path: index_dir.clone(),
            source,
        })?;
        for removed in generation::remove_incomplete(&index_dir)? {
            tracing::warn!(path = %removed.display(), "removed an incomplete generation left by an interrupted rebuild");
        }
        let (base, skipped) = generation::open_newest(&index_dir, &specs)?;
        for (id, err) in skipped {
            tracing::error!(generation = id, error = %err, "skipping unusable generation");
        }
        let base = base.unwrap_or_else(|| Generation::empty(&specs));
        tracing::info!(
            generation = base.id,
            snapshot_seq = base.snapshot_seq,
            "index generation mapped"
        );
        let migrate = base.is_legacy();

        // A generation written before lexical search (or restored from a snapshot without its
        // `lexical/` folder) has no lexical part: then every item is replayed into the RAM part.
        let (lexical_base, lexical_from) = match base
            .dir
            .as_ref()
            .map(|d| lexical::Segment::open(&d.join(LEXICAL_DIR)))
        {
            Some(Ok(segment)) => (segment, base.snapshot_seq),
            Some(Err(e)) => {
                tracing::warn!(generation = base.id, error = %e, "no usable lexical index in the generation; indexing every item's text in memory until the next rebuild");
                (lexical::Segment::empty()?, 0)
            }
            None => (lexical::Segment::empty()?, 0),
        };
        let lexical_fresh = lexical::Fresh::new()?;
        let mut catalog = Catalog::default();
        let mut pending: Vec<(u64, crate::model::Item)> = Vec::new();
        let mut lexical_err = None;
        store.for_each_item(|v| {
            let spaces = space_bits(&specs, &v.spaces);
            let category = catalog.intern_category(&v.item.category);
            catalog.insert(v.seq, Entry::new(&v.item, category, spaces));
            if v.seq > lexical_from && lexical_err.is_none() {
                pending.push((v.seq, v.item));
                if pending.len() >= 10_000 {
                    lexical_err = lexical_fresh
                        .add(pending.iter().map(|(s, i)| (*s, i)))
                        .err();
                    pending.clear();
                }
            }
        })?;
        if let Some(e) = lexical_err {
            return Err(e.into());
        }
        lexical_fresh.add(pending.iter().map(|(s, i)| (*s, i)))?;
        drop(pending);
        let mut fresh: HashMap<String, FlatLayer> = specs
            .iter()
            .map(|s| (s.name.clone(), FlatLayer::new(s.dim, s.metric)))
            .collect();
        let mut replayed = 0usize;
        let mut load_err = None;
        store.for_each_vector_after(base.snapshot_seq, |seq, space, row| {
            if !catalog.is_live(seq) {
                return;
            }
            let (Some(layer), Some(spec)) = (
                fresh.get_mut(&space),
                specs.iter().find(|s| s.name == space),
            ) else {
                return;
            };
            if row.len() == spec.dim {
                layer.insert(seq, &row);
                replayed += 1;
            } else if load_err.is_none() {
                load_err = Some(format!(
                    "stored vector seq {seq} in {space} has dim {}",
                    row.len()
                ));
            }
        })?;
        if let Some(e) = load_err {
            tracing::error!("{e}; the space's config changed since it was written — rebuild after fixing the config");
        }
        let next_seq = store.next_seq()?;
        tracing::info!(
            items = catalog.len(),
            replayed,
            lexical_replayed = lexical_fresh.docs(),
            next_seq,
            "store replayed"
        );
        let config_memory = config.memory.clone();
        let collection = Arc::new(Collection {
            store,
            specs,
            config,
            state: RwLock::new(State {
                base: Arc::new(base),
                fresh,
                lexical_base: Arc::new(lexical_base),
                lexical_fresh: Arc::new(lexical_fresh),
                catalog,
            }),
            writer: Mutex::new(next_seq),
            rebuild: rebuild::Coordinator::default(),
            generation_files: Mutex::new(()),
            memory: memory::MemoryBudget::new(&config_memory),
        });
        if migrate {
            // Generations written before the flat graph format (an hnsw_rs dump beside the
            // vector file) keep serving while a rebuild from the store writes the flat format.
            tracing::warn!(
                generation = collection.base_generation().id,
                "index generation is in the hnsw_rs format of older releases; serving it while a rebuild writes the flat graph format"
            );
            let _ = collection.rebuild();
        } else {
            collection.maybe_compact();
        }
        Ok(collection)
    }

    pub fn specs(&self) -> &[SpaceSpec] {
        &self.specs
    }

    pub fn spec(&self, space: &str) -> Result<&SpaceSpec> {
        self.specs
            .iter()
            .find(|s| s.name == space)
            .ok_or_else(|| CollectionError::UnknownSpace(space.to_string()))
    }

    fn space_index(&self, space: &str) -> Result<usize> {
        self.specs
            .iter()
            .position(|s| s.name == space)
            .ok_or_else(|| CollectionError::UnknownSpace(space.to_string()))
    }

    pub fn config(&self) -> &CollectionConfig {
        &self.config
    }

    /// Which models made the stored vectors (`None`: not recorded yet).
    pub fn vector_models(&self) -> Result<Option<String>> {
        Ok(self.store.vector_models()?)
    }

    pub fn set_vector_models(&self, models: &str) -> Result<()> {
        Ok(self.store.set_vector_models(models)?)
    }

    /// Live items (blocking: reads every item record), for re-encoding the catalogue.
    pub fn for_each_item(&self, f: impl FnMut(Version)) -> Result<()> {
        Ok(self.store.for_each_item(f)?)
    }

    /// What the process holds, by part (see [`memory`]).
    pub fn memory_use(&self) -> MemoryUse {
        let (mutable_layers, catalogue, live_vector_bytes) = {
            let state = self.state.read();
            let live: u64 = self
                .specs
                .iter()
                .enumerate()
                .map(|(i, s)| (state.catalog.live_in(i) * s.dim * 4) as u64)
                .sum();
            (
                state.fresh.values().map(|l| l.heap_bytes() as u64).sum(),
                state.catalog.heap_bytes() as u64,
                live,
            )
        };
        let rocksdb = self.store.memory();
        MemoryUse {
            rocksdb_caps: rocksdb.block_cache_capacity
                + self.config.store.memtable_budget_bytes as u64,
            rocksdb,
            mutable_layers,
            catalogue,
            rebuild_reserve: self.memory.rebuild_reserve(live_vector_bytes),
            baseline: self.memory.baseline(),
            limit: self.memory.limit(),
        }
    }

    /// Re-measures the part of `rss` (the process's resident bytes now) that writes do not grow:
    /// call after opening and after loading anything large.
    pub fn set_memory_baseline(&self, rss: u64) {
        self.memory.set_baseline(rss, self.memory_use().counted());
    }

    /// Refuses a write of about `incoming` bytes that would pass the budget, and starts the
    /// rebuild that frees the mutable layer.
    fn admit_write(self: &Arc<Self>, incoming: u64) -> Result<()> {
        if self.memory.limit().is_none() {
            return Ok(());
        }
        let accounted = self.memory_use().accounted();
        self.memory.admit(accounted, incoming).map_err(|e| {
            if !self.rebuild.is_running() && self.state.read().fresh.values().any(|l| !l.is_empty())
            {
                tracing::warn!(
                    accounted,
                    incoming,
                    "memory budget reached; rebuilding to fold the mutable layer into a generation"
                );
                let _ = self.rebuild();
            }
            CollectionError::OverBudget(e)
        })
    }

    /// Persists everything in memory (clean shutdown); acknowledged writes are durable already.
    pub fn flush(&self) -> Result<()> {
        Ok(self.store.flush()?)
    }

    /// Starts a rebuild, or joins the one already running.
    pub fn rebuild(self: &Arc<Self>) -> tokio::sync::watch::Receiver<RebuildProgress> {
        rebuild::start(self)
    }

    pub fn is_rebuilding(&self) -> bool {
        self.rebuild.is_running()
    }

    /// Progress of the running rebuild, or how the last one ended; `None` before the first.
    pub fn rebuild_progress(&self) -> Option<RebuildProgress> {
        self.rebuild.latest()
    }

    /// Folds the mutable layer into a new generation once it grows past `max_fresh`.
    fn maybe_compact(self: &Arc<Self>) {
        let max_fresh = self.config.index.max_fresh;
        let over = self
            .state
            .read()
            .fresh
            .values()
            .any(|l| l.len() >= max_fresh);
        if over && !self.rebuild.is_running() {
            tracing::info!(
                "mutable layer reached {max_fresh} vectors; starting a background rebuild"
            );
            let _ = self.rebuild(); // progress is observable through Status
        }
    }

    pub fn stats(&self) -> Stats {
        // Lock order is writer → state everywhere (as in `upsert`), so read the writer first.
        let last_seq = self.writer.lock().saturating_sub(1);
        let state = self.state.read();
        let base = &state.base;
        let mut mapped = 0;
        let spaces = self
            .specs
            .iter()
            .map(|spec| {
                let seg = base.segment(&spec.name);
                let base_vectors = seg.map_or(0, |s| s.len());
                let live_in_base = seg.map_or(0, |s| {
                    s.ids()
                        .iter()
                        .filter(|&&id| state.catalog.is_live(id))
                        .count()
                });
                mapped += seg.map_or(0, |s| s.mapped_bytes());
                SpaceStats {
                    spec: spec.clone(),
                    base_vectors,
                    fresh_vectors: state.fresh.get(&spec.name).map_or(0, |l| l.len()),
                    tombstones: base_vectors - live_in_base,
                    layer_counts: seg.map(|s| s.layer_counts()).unwrap_or_default(),
                }
            })
            .collect();
        Stats {
            items: state.catalog.len(),
            generation: base.id,
            snapshot_seq: base.snapshot_seq,
            generations_on_disk: generation::list_generations(&self.config.index_dir())
                .unwrap_or_default(),
            spaces,
            last_seq,
            rebuilding: self.rebuild.is_running(),
            mapped_bytes: mapped,
            store_memory: self.store.memory(),
        }
    }

    /// The generation searches use now. For measuring the index on its own (benches); the
    /// search path goes through [`Self::search`], which also covers the mutable layer.
    pub fn base_generation(&self) -> Arc<Generation> {
        self.state.read().base.clone()
    }
}

/// The lexical index's folder inside a generation folder.
const LEXICAL_DIR: &str = "lexical";

/// The catalogue's bitmask of the configured spaces among `names`.
fn space_bits(specs: &[SpaceSpec], names: &[String]) -> u64 {
    names
        .iter()
        .filter_map(|n| specs.iter().position(|s| &s.name == n))
        .fold(0, |acc, i| acc | (1u64 << i))
}
