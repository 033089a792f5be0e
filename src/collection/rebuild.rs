//! Rebuild: fold the store into a new generation in the background and swap it in.
//!
//! 1. scanning — read every live vector from a RocksDB snapshot; the snapshot's `next_seq`
//!    fixes which writes the generation covers, while new writes continue into the mutable layer.
//! 2. building — build each space's HNSW graph (hnsw_rs parallel insert) in a `.tmp` folder.
//! 3. writing — dump, fsync, write the manifest, rename the folder into place.
//! 4. swapping — reopen the generation from disk (mmapped, verified), then, under the state
//!    lock, make it the base and drop mutable-layer rows it now covers. Searches in flight keep
//!    their `Arc` to the old generation until they finish.
//!
//! A crash before the rename leaves only a `.tmp` folder, removed at the next start.

use super::Collection;
use mmsearch_index::generation::{self, Generation, GenerationWriter};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildPhase {
    Queued,
    Scanning,
    Building,
    Writing,
    Swapping,
    Done,
    Failed,
}

impl RebuildPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RebuildPhase::Queued => "queued",
            RebuildPhase::Scanning => "scanning",
            RebuildPhase::Building => "building",
            RebuildPhase::Writing => "writing",
            RebuildPhase::Swapping => "swapping",
            RebuildPhase::Done => "done",
            RebuildPhase::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RebuildProgress {
    pub phase: RebuildPhase,
    pub done: u64,
    pub total: u64,
    pub eta_seconds: f64,
    pub generation: u64,
    pub space: String,
    pub error: Option<String>,
}

#[derive(Default)]
pub(super) struct Coordinator {
    running: AtomicBool,
    current: parking_lot::Mutex<Option<watch::Receiver<RebuildProgress>>>,
}

impl Coordinator {
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Progress of the running rebuild, or the final state of the last one.
    pub fn latest(&self) -> Option<RebuildProgress> {
        self.current.lock().as_ref().map(|rx| rx.borrow().clone())
    }
}

pub(super) fn start(collection: &Arc<Collection>) -> watch::Receiver<RebuildProgress> {
    let coord = &collection.rebuild;
    let mut current = coord.current.lock();
    if coord.running.load(Ordering::Acquire) {
        if let Some(rx) = current.as_ref() {
            return rx.clone();
        }
    }
    let (tx, rx) = watch::channel(RebuildProgress {
        phase: RebuildPhase::Queued,
        done: 0,
        total: 0,
        eta_seconds: 0.0,
        generation: 0,
        space: String::new(),
        error: None,
    });
    coord.running.store(true, Ordering::Release);
    *current = Some(rx.clone());
    let c = collection.clone();
    let spawned = std::thread::Builder::new().name("rebuild".into()).spawn(move || {
        let started = Instant::now();
        let result = run(&c, &tx);
        match result {
            Ok(generation) => {
                tracing::info!(generation, seconds = started.elapsed().as_secs_f64(), "rebuild finished");
            }
            Err(e) => {
                tracing::error!(error = %e, "rebuild failed; the previous generation stays in use");
                tx.send_modify(|p| {
                    p.phase = RebuildPhase::Failed;
                    p.error = Some(e.to_string());
                });
            }
        }
        c.rebuild.running.store(false, Ordering::Release);
    });
    if let Err(e) = spawned {
        coord.running.store(false, Ordering::Release);
        tracing::error!(error = %e, "could not start the rebuild thread");
    }
    rx
}

fn run(c: &Arc<Collection>, tx: &watch::Sender<RebuildProgress>) -> super::Result<u64> {
    let root = c.config.index_dir();
    let generation_id = {
        let on_disk = generation::list_generations(&root)?
            .last()
            .copied()
            .unwrap_or(0);
        on_disk.max(c.state.read().base.id) + 1
    };
    tx.send_modify(|p| {
        p.phase = RebuildPhase::Scanning;
        p.generation = generation_id;
    });
    let mut by_space: BTreeMap<String, Vec<(u64, Vec<f32>)>> = c
        .specs
        .iter()
        .map(|s| (s.name.clone(), Vec::new()))
        .collect();
    let mut scanned = 0u64;
    let snapshot_seq = c.store.snapshot_vectors(|seq, space, row| {
        if let Some(rows) = by_space.get_mut(&space) {
            rows.push((seq, row));
        }
        scanned += 1;
        if scanned % 10_000 == 0 {
            tx.send_modify(|p| p.done = scanned);
        }
    })?;
    let total: u64 = by_space.values().map(|r| r.len() as u64).sum();
    tx.send_modify(|p| {
        p.phase = RebuildPhase::Building;
        p.done = 0;
        p.total = total;
    });

    let mut writer = GenerationWriter::create(&root, generation_id, snapshot_seq)?;
    let params = c.config.index.hnsw_params();
    let build_started = Instant::now();
    let mut done_before = 0u64;
    for spec in &c.specs {
        let rows = by_space.get(&spec.name).map(Vec::as_slice).unwrap_or(&[]);
        // Keys were scanned in (seq, space) order, so rows are already sorted by id.
        let refs: Vec<(u64, &[f32])> = rows.iter().map(|(s, v)| (*s, v.as_slice())).collect();
        tx.send_modify(|p| p.space = spec.name.clone());
        let mut report = |n: usize| {
            let done = done_before + n as u64;
            let elapsed = build_started.elapsed().as_secs_f64();
            let eta = if done > 0 {
                elapsed / done as f64 * (total.saturating_sub(done)) as f64
            } else {
                0.0
            };
            tx.send_modify(|p| {
                p.done = done;
                p.eta_seconds = eta;
            });
        };
        if let Err(e) = writer.add_space(
            spec,
            &params,
            &refs,
            c.config.index.min_graph_size,
            &mut report,
        ) {
            writer.abandon();
            return Err(e.into());
        }
        done_before += refs.len() as u64;
    }
    drop(by_space);
    tx.send_modify(|p| {
        p.phase = RebuildPhase::Writing;
        p.eta_seconds = 0.0;
    });
    // The lexical part of the same versions: the live items the snapshot covers. An item
    // replaced or deleted since is a newer seq (in the RAM part) or filtered as a tombstone.
    if let Err(e) = build_lexical(c, &writer.dir().join(super::LEXICAL_DIR), snapshot_seq) {
        writer.abandon();
        return Err(e);
    }
    let dir = writer.commit()?;

    tx.send_modify(|p| p.phase = RebuildPhase::Swapping);
    // Reopen from disk so the generation in use is exactly what a restart would load.
    let generation = Arc::new(Generation::open(&dir, &c.specs)?);
    let lexical = Arc::new(crate::lexical::Segment::open(
        &dir.join(super::LEXICAL_DIR),
    )?);
    {
        let mut state = c.state.write();
        state.base = generation;
        state.lexical_base = lexical;
        for layer in state.fresh.values_mut() {
            layer.retain_newer_than(snapshot_seq);
        }
        state.lexical_fresh.retain_newer_than(snapshot_seq)?;
    }
    let pruned = {
        let _no_snapshot_linking = c.generation_files.lock();
        generation::prune(&root, c.config.index.keep_generations.max(1), generation_id)
    };
    match pruned {
        Ok(removed) if !removed.is_empty() => tracing::info!(?removed, "pruned old generations"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not prune old generations"),
    }
    tx.send_modify(|p| {
        p.phase = RebuildPhase::Done;
        p.done = total;
        p.eta_seconds = 0.0;
    });
    Ok(generation_id)
}

fn build_lexical(c: &Collection, dir: &std::path::Path, snapshot_seq: u64) -> super::Result<()> {
    let mut builder = crate::lexical::SegmentBuilder::create(dir)?;
    let mut failed = None;
    c.store.for_each_item(|v| {
        if v.seq <= snapshot_seq && failed.is_none() {
            failed = builder.add(v.seq, &v.item).err();
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    let n = builder.finish()?;
    tracing::info!(documents = n, "lexical index built");
    Ok(())
}
