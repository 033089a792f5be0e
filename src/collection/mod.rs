//! The collection: the store plus the in-memory state derived from it — the current index
//! generation, the mutable layer of newer writes, and the live catalogue — and the
//! operations that keep them consistent (write, delete, search, rebuild, recover).
//!
//! Consistency rules:
//! - Every stored item version has a unique, increasing `seq`; the index knows only seqs.
//! - A generation covers all writes with seq ≤ its `snapshot_seq`; newer vectors are in the
//!   mutable layer. A base vector whose seq is no longer live in the catalogue (deleted or
//!   replaced) is a tombstone: filtered out at search time until the next rebuild drops it.
//! - Writes are serialised by `writer`, made durable in RocksDB first (synced WAL), and only
//!   then applied to the in-memory state, so anything a search can see is already durable.

mod catalog;
mod rebuild;
pub mod snapshot;

pub use catalog::{Catalog, Entry};
pub use rebuild::{RebuildPhase, RebuildProgress};
pub use snapshot::{ModelRef, SnapshotError, SnapshotInfo};

use crate::config::Config;
use crate::store::{Store, StoreError, StoredItem, WriteOp};
use mmsearch_index::generation::{self, Generation};
use mmsearch_index::{FlatLayer, IndexError, Scored, SpaceSpec, TopK};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

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
}

pub type Result<T> = std::result::Result<T, CollectionError>;

/// An item ready to be written: metadata and prepared vectors by space.
pub struct PreparedItem {
    pub item: StoredItem,
    pub vectors: Vec<(String, Vec<f32>)>,
}

pub(crate) struct State {
    pub base: Arc<Generation>,
    pub fresh: HashMap<String, FlatLayer>,
    pub catalog: Catalog,
}

pub struct SearchOutcome {
    pub hits: Vec<Scored>,
    /// The matching set was small enough to scan exactly.
    pub exact: bool,
}

/// Live filter on catalogue entries, compiled by the query pipeline.
pub type EntryFilter<'a> = &'a (dyn Fn(&Entry) -> bool + Sync);

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
    pub store_memory_bytes: u64,
}

pub struct Collection {
    store: Store,
    specs: Vec<SpaceSpec>,
    config: Config,
    state: RwLock<State>,
    /// Next seq to assign; holding the lock serialises writers.
    writer: Mutex<u64>,
    rebuild: rebuild::Coordinator,
    /// Held while generation folders are deleted (rebuild's prune) or linked into a snapshot,
    /// so a snapshot never links a half-deleted generation.
    generation_files: Mutex<()>,
    pub started: Instant,
}

impl Collection {
    /// Opens the store, maps the newest complete generation and replays what came after it.
    pub fn open(config: &Config) -> Result<Arc<Collection>> {
        let specs = config.space_specs();
        if config.data_dir.join(snapshot::RESTORE_MARKER).exists() {
            return Err(SnapshotError::InterruptedRestore(config.data_dir.clone()).into());
        }
        let store = Store::open(&config.store_dir())?;
        let index_dir = config.index_dir();
        std::fs::create_dir_all(&index_dir)
            .map_err(|source| StoreError::Io { path: index_dir.clone(), source })?;
        for removed in generation::remove_incomplete(&index_dir)? {
            tracing::warn!(path = %removed.display(), "removed an incomplete generation left by an interrupted rebuild");
        }
        let (base, skipped) = generation::open_newest(&index_dir, &specs)?;
        for (id, err) in skipped {
            tracing::error!(generation = id, error = %err, "skipping unusable generation");
        }
        let base = base.unwrap_or_else(|| Generation::empty(&specs));
        tracing::info!(generation = base.id, snapshot_seq = base.snapshot_seq, "index generation mapped");

        let space_bit: HashMap<&str, u64> = specs.iter().enumerate().map(|(i, s)| (s.name.as_str(), 1u64 << i)).collect();
        let mut catalog = Catalog::default();
        let mut load_err = None;
        store.for_each_item(|item| {
            let spaces = item.spaces.iter().filter_map(|s| space_bit.get(s.as_str())).fold(0, |a, b| a | b);
            let category = catalog.intern_category(&item.category);
            let entry = Entry {
                id: Arc::from(item.id.as_str()),
                category,
                price: item.price,
                attributes: item.attributes,
                spaces,
            };
            catalog.insert(item.seq, entry);
        })?;
        let mut fresh: HashMap<String, FlatLayer> =
            specs.iter().map(|s| (s.name.clone(), FlatLayer::new(s.dim, s.metric))).collect();
        let mut replayed = 0usize;
        store.for_each_vector_after(base.snapshot_seq, |seq, space, row| {
            if !catalog.is_live(seq) {
                return;
            }
            if let Some(layer) = fresh.get_mut(&space) {
                if row.len() == layer_dim(&specs, &space) {
                    layer.insert(seq, &row);
                    replayed += 1;
                } else if load_err.is_none() {
                    load_err = Some(format!("stored vector seq {seq} in {space} has dim {}", row.len()));
                }
            }
        })?;
        if let Some(e) = load_err {
            tracing::error!("{e}; the space's config changed since it was written — rebuild after fixing the config");
        }
        let next_seq = store.next_seq()?;
        tracing::info!(items = catalog.len(), replayed, next_seq, "store replayed");
        let collection = Arc::new(Collection {
            store,
            specs,
            config: config.clone(),
            state: RwLock::new(State { base: Arc::new(base), fresh, catalog }),
            writer: Mutex::new(next_seq),
            rebuild: rebuild::Coordinator::default(),
            generation_files: Mutex::new(()),
            started: Instant::now(),
        });
        collection.maybe_compact();
        Ok(collection)
    }

    pub fn specs(&self) -> &[SpaceSpec] {
        &self.specs
    }

    pub fn spec(&self, space: &str) -> Result<&SpaceSpec> {
        self.specs.iter().find(|s| s.name == space).ok_or_else(|| CollectionError::UnknownSpace(space.to_string()))
    }

    fn space_index(&self, space: &str) -> Result<usize> {
        self.specs.iter().position(|s| s.name == space).ok_or_else(|| CollectionError::UnknownSpace(space.to_string()))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Writes a group of items durably, then makes them searchable. Returns their seqs.
    pub fn upsert(self: &Arc<Self>, items: Vec<PreparedItem>) -> Result<Vec<u64>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let seqs = {
            let mut next_seq = self.writer.lock();
            let mut assigned = Vec::with_capacity(items.len());
            let mut items = items;
            let mut replaced: Vec<Option<u64>> = Vec::with_capacity(items.len());
            // Within one group the same id may appear twice; the later one wins.
            let mut in_group: HashMap<String, u64> = HashMap::new();
            {
                let state = self.state.read();
                for p in items.iter_mut() {
                    let seq = *next_seq + assigned.len() as u64;
                    p.item.seq = seq;
                    p.item.spaces = p.vectors.iter().map(|(s, _)| s.clone()).collect();
                    let prev = in_group.insert(p.item.id.clone(), seq).or_else(|| state.catalog.seq_of(&p.item.id));
                    replaced.push(prev);
                    assigned.push(seq);
                }
            }
            let new_next = *next_seq + assigned.len() as u64;
            let ops: Vec<WriteOp<'_>> = items
                .iter()
                .zip(&replaced)
                .map(|(p, r)| WriteOp::Put { item: &p.item, vectors: &p.vectors, replaces_seq: *r })
                .collect();
            self.store.write(&ops, new_next)?;
            *next_seq = new_next;

            let mut state = self.state.write();
            for p in items {
                let spaces = p
                    .vectors
                    .iter()
                    .filter_map(|(s, _)| self.space_index(s).ok())
                    .fold(0u64, |acc, i| acc | (1 << i));
                let category = state.catalog.intern_category(&p.item.category);
                let entry = Entry {
                    id: Arc::from(p.item.id.as_str()),
                    category,
                    price: p.item.price,
                    attributes: p.item.attributes,
                    spaces,
                };
                if let Some(old) = state.catalog.insert(p.item.seq, entry) {
                    for layer in state.fresh.values_mut() {
                        layer.remove(old);
                    }
                }
                for (space, row) in &p.vectors {
                    if let Some(layer) = state.fresh.get_mut(space) {
                        layer.insert(p.item.seq, row);
                    }
                }
            }
            assigned
        };
        self.maybe_compact();
        Ok(seqs)
    }

    /// Deletes items durably; returns the ids that did not exist.
    pub fn delete(&self, ids: &[String]) -> Result<(usize, Vec<String>)> {
        let next_seq = self.writer.lock();
        let mut found = Vec::new();
        let mut missing = Vec::new();
        {
            let state = self.state.read();
            let mut seen = std::collections::HashSet::new();
            for id in ids {
                if !seen.insert(id.as_str()) {
                    continue;
                }
                match state.catalog.seq_of(id) {
                    Some(seq) => found.push((id.clone(), seq)),
                    None => missing.push(id.clone()),
                }
            }
        }
        if !found.is_empty() {
            let ops: Vec<WriteOp<'_>> = found.iter().map(|(id, seq)| WriteOp::Delete { id, seq: *seq }).collect();
            self.store.write(&ops, *next_seq)?;
            let mut state = self.state.write();
            for (id, seq) in &found {
                state.catalog.remove(id);
                for layer in state.fresh.values_mut() {
                    layer.remove(*seq);
                }
            }
        }
        Ok((found.len(), missing))
    }

    pub fn get(&self, id: &str) -> Result<StoredItem> {
        self.store.get(id)?.ok_or_else(|| CollectionError::NotFound(id.to_string()))
    }

    pub fn get_many(&self, ids: &[&str]) -> Result<Vec<Option<StoredItem>>> {
        Ok(self.store.multi_get(ids)?)
    }

    /// The live seq of an item.
    pub fn seq_of(&self, id: &str) -> Option<u64> {
        self.state.read().catalog.seq_of(id)
    }

    /// The prepared vector of an item in a space ("more like this").
    pub fn item_vector(&self, id: &str, space: &str) -> Result<(u64, Vec<f32>)> {
        self.spec(space)?;
        let seq = {
            let state = self.state.read();
            let seq = state.catalog.seq_of(id).ok_or_else(|| CollectionError::NotFound(id.to_string()))?;
            if let Some(v) = state.fresh.get(space).and_then(|l| l.get(seq)) {
                return Ok((seq, v.to_vec()));
            }
            if let Some(v) = state.base.segment(space).and_then(|s| s.vectors.get(seq)) {
                return Ok((seq, v.to_vec()));
            }
            seq
        };
        match self.store.vector(seq, space)? {
            Some(v) => Ok((seq, v)),
            None => Err(CollectionError::NoVector { id: id.to_string(), space: space.to_string() }),
        }
    }

    /// Nearest live items to a prepared query vector in one space, over the base generation
    /// and the mutable layer, honouring `filter` and skipping `exclude`.
    pub fn search(
        &self,
        space: &str,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<EntryFilter<'_>>,
        exclude: Option<u64>,
    ) -> Result<SearchOutcome> {
        let bit = 1u64 << self.space_index(space)?;
        let state = self.state.read();
        let catalog = &state.catalog;
        let fresh = state.fresh.get(space).ok_or_else(|| CollectionError::UnknownSpace(space.to_string()))?;
        let base = state.base.segment(space);
        let accept = |seq: u64| -> bool {
            if Some(seq) == exclude {
                return false;
            }
            match catalog.entry(seq) {
                Some(e) => filter.is_none_or(|f| f(e)),
                None => false,
            }
        };
        let exact_over = |candidates: &[u64]| -> Vec<Scored> {
            let mut top = TopK::new(k);
            for &seq in candidates {
                let row = fresh.get(seq).or_else(|| base.and_then(|b| b.vectors.get(seq)));
                if let Some(row) = row {
                    top.push(seq, state_metric(&self.specs, space).score(query, row));
                }
            }
            top.into_sorted()
        };

        if let Some(f) = filter {
            let matching: Vec<u64> = catalog
                .iter()
                .filter(|(seq, e)| e.spaces & bit != 0 && Some(*seq) != exclude && f(e))
                .map(|(seq, _)| seq)
                .collect();
            if matching.len() <= self.config.index.exact_scan_threshold.max(k) {
                return Ok(SearchOutcome { hits: exact_over(&matching), exact: true });
            }
            let hits = self.approximate(base, fresh, query, k, ef, &accept);
            if hits.len() < k.min(matching.len()) {
                return Ok(SearchOutcome { hits: exact_over(&matching), exact: true });
            }
            return Ok(SearchOutcome { hits, exact: false });
        }

        let hits = self.approximate(base, fresh, query, k, ef, &accept);
        if hits.len() < k {
            // Live items with a vector in this space: what an exact scan would rank.
            let all: Vec<u64> =
                catalog.iter().filter(|(seq, e)| e.spaces & bit != 0 && Some(*seq) != exclude).map(|(s, _)| s).collect();
            if hits.len() >= all.len() {
                return Ok(SearchOutcome { hits, exact: false });
            }
            // Tombstones crowded the beam; widen it once before paying for an exact scan.
            let wider = self.approximate(base, fresh, query, k, (ef * 8).max(k * 8), &accept);
            if wider.len() >= k {
                return Ok(SearchOutcome { hits: wider, exact: false });
            }
            return Ok(SearchOutcome { hits: exact_over(&all), exact: true });
        }
        Ok(SearchOutcome { hits, exact: false })
    }

    fn approximate(
        &self,
        base: Option<&mmsearch_index::BaseSegment>,
        fresh: &FlatLayer,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: &dyn Fn(u64) -> bool,
    ) -> Vec<Scored> {
        let mut merged = match base {
            Some(b) if !b.is_empty() => b.search(query, k, ef, accept),
            _ => Vec::new(),
        };
        merged.extend(fresh.search(query, k, accept));
        merged.sort_by(Scored::better_first);
        merged.dedup_by_key(|s| s.id);
        merged.truncate(k);
        merged
    }

    /// Starts a rebuild, or joins the one already running.
    pub fn rebuild(self: &Arc<Self>) -> tokio::sync::watch::Receiver<RebuildProgress> {
        rebuild::start(self)
    }

    pub fn is_rebuilding(&self) -> bool {
        self.rebuild.is_running()
    }

    /// Persists everything in memory (clean shutdown); acknowledged writes are durable already.
    pub fn flush(&self) -> Result<()> {
        Ok(self.store.flush()?)
    }

    /// Progress of the running rebuild, or how the last one ended; `None` before the first.
    pub fn rebuild_progress(&self) -> Option<RebuildProgress> {
        self.rebuild.latest()
    }

    /// Folds the mutable layer into a new generation once it grows past `max_fresh`.
    fn maybe_compact(self: &Arc<Self>) {
        let over = {
            let state = self.state.read();
            state.fresh.values().any(|l| l.len() >= self.config.index.max_fresh)
        };
        if over && !self.rebuild.is_running() {
            tracing::info!("mutable layer reached {} vectors; starting a background rebuild", self.config.index.max_fresh);
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
                let live_in_base =
                    seg.map_or(0, |s| s.vectors.ids().iter().filter(|&&id| state.catalog.is_live(id)).count());
                mapped += seg.map_or(0, |s| s.vectors.mapped_bytes());
                SpaceStats {
                    spec: spec.clone(),
                    base_vectors,
                    fresh_vectors: state.fresh.get(&spec.name).map_or(0, |l| l.len()),
                    tombstones: base_vectors - live_in_base,
                    layer_counts: seg.and_then(|s| s.graph.as_ref()).map(|g| g.layer_counts()).unwrap_or_default(),
                }
            })
            .collect();
        Stats {
            items: state.catalog.len(),
            generation: base.id,
            snapshot_seq: base.snapshot_seq,
            generations_on_disk: generation::list_generations(&self.config.index_dir()).unwrap_or_default(),
            spaces,
            last_seq,
            rebuilding: self.rebuild.is_running(),
            mapped_bytes: mapped,
            store_memory_bytes: self.store.approximate_memory_bytes(),
        }
    }

    /// The generation searches use now. For measuring the index on its own (benches); the
    /// search path goes through [`Self::search`], which also covers the mutable layer.
    pub fn base_generation(&self) -> Arc<Generation> {
        self.state.read().base.clone()
    }

    pub(crate) fn state(&self) -> &RwLock<State> {
        &self.state
    }
}

fn layer_dim(specs: &[SpaceSpec], space: &str) -> usize {
    specs.iter().find(|s| s.name == space).map_or(0, |s| s.dim)
}

fn state_metric(specs: &[SpaceSpec], space: &str) -> mmsearch_index::Metric {
    specs.iter().find(|s| s.name == space).map_or(mmsearch_index::Metric::Cosine, |s| s.metric)
}
