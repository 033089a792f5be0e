//! The native graph builder: hnswlib's insertion algorithm, in parallel, writing the flat
//! graph format directly.
//!
//! Per inserted node (hnswlib `addPoint`):
//! 1. draw its level `⌊-ln(U) · 1/ln(m)⌋` (capped at 15) from a seeded generator, so a build
//!    is reproducible up to thread scheduling;
//! 2. greedy descent from the entry point down to level+1;
//! 3. on each level from min(level, top) down to 0: a beam search of width `ef_construction`,
//!    then the heuristic neighbour selection (keep a candidate only if it is nearer to the new
//!    node than to every neighbour kept so far) down to m links on every level (hnswlib; faiss
//!    and hnsw_rs take 2·m on layer 0, a denser graph that needs a narrower beam for the same
//!    recall but about twice the re-pruning per insert: at equal distance computations per
//!    query the recall is the same, `tests/flat_graph.rs`);
//! 4. back-links: each chosen neighbour gets the new node; a list over capacity (m above
//!    layer 0, m0 = 2·m on layer 0) is re-pruned with the same heuristic.
//!
//! Concurrency: one mutex per node guards its link lists (a reader copies a list under the
//! lock, as hnswlib does); a node whose level tops the graph holds the entry-point lock for
//! its whole insertion, so the entry point only ever moves to a fully linked node.
//! Worker threads take nodes from a shared counter; node 0 is inserted first, alone.

use crate::error::{IndexError, Result};
use crate::graph_file::{self, Builder, GraphSource, MAX_LEVELS};
use crate::kernel::Kernel;
use crate::metric::Metric;
use crate::search::{Far, Near, VisitedList};
use parking_lot::{Mutex, RwLock};
use std::collections::BinaryHeap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Build parameters (hnswlib names).
#[derive(Debug, Clone, Copy)]
pub struct BuildParams {
    pub m: usize,
    pub ef_construction: usize,
    /// Worker threads; 0 = all cores.
    pub threads: usize,
    pub seed: u64,
}

/// A graph in memory: what [`build`] returns and [`NativeGraph::write`] stores.
pub struct NativeGraph {
    pub metric: Metric,
    pub dim: usize,
    pub m: usize,
    pub ef_construction: usize,
    pub levels: Vec<u8>,
    pub entry: u32,
    /// `links[node][level]`.
    pub links: Vec<Vec<Vec<u32>>>,
}

/// One worker's reusable state.
#[derive(Default)]
struct Work {
    visited: VisitedList,
    buf: Vec<u32>,
    cand: BinaryHeap<Near>,
    res: BinaryHeap<Far>,
}

struct Shared<'a> {
    kernel: Kernel,
    rows: &'a [&'a [f32]],
    m: usize,
    m0: usize,
    efc: usize,
    levels: &'a [u8],
    nodes: Vec<Mutex<Vec<Vec<u32>>>>,
    /// Set when a node's insertion has finished: its lists on every level are in place. A node
    /// becomes reachable on a level as soon as it is back-linked there, while its lists on the
    /// levels below may still be empty; a search that descended through it would start the next
    /// level from a node without links and link the new node to it alone.
    done: Vec<AtomicBool>,
    /// (entry node, its level); None before the first insert.
    entry: RwLock<Option<(u32, usize)>>,
}

impl Shared<'_> {
    #[inline]
    fn vec(&self, n: u32) -> &[f32] {
        self.rows[n as usize]
    }

    #[inline]
    fn dist(&self, a: u32, b: u32) -> f32 {
        self.kernel.distance(self.vec(a), self.vec(b))
    }

    fn copy_links(&self, node: u32, level: usize, out: &mut Vec<u32>) {
        out.clear();
        let g = self.nodes[node as usize].lock();
        if let Some(l) = g.get(level) {
            out.extend_from_slice(l);
        }
    }

    /// Beam search on one level from `ep`; leaves up to `ef` nearest, nearest first, in `out`.
    fn search_level(
        &self,
        q: u32,
        ep: u32,
        level: usize,
        ef: usize,
        w: &mut Work,
        out: &mut Vec<Far>,
    ) {
        let Work {
            visited,
            buf,
            cand,
            res,
        } = w;
        visited.reset(self.nodes.len());
        cand.clear();
        res.clear();
        let d = self.dist(q, ep);
        visited.check_and_mark(ep);
        cand.push(Near(Far(d, ep)));
        res.push(Far(d, ep));
        while let Some(Near(Far(dc, c))) = cand.pop() {
            let bound = res.peek().map_or(f32::INFINITY, |f| f.0);
            if dc > bound && res.len() >= ef {
                break;
            }
            self.copy_links(c, level, buf);
            for &nb in buf.iter() {
                if visited.check_and_mark(nb) {
                    continue;
                }
                let d = self.dist(q, nb);
                let bound = res.peek().map_or(f32::INFINITY, |f| f.0);
                if res.len() < ef || d < bound {
                    cand.push(Near(Far(d, nb)));
                    res.push(Far(d, nb));
                    if res.len() > ef {
                        res.pop();
                    }
                }
            }
        }
        out.clear();
        out.extend(res.drain());
        out.sort_unstable();
    }

    /// hnswlib's `getNeighborsByHeuristic2`: `cands` sorted nearest first → at most `keep`.
    fn heuristic(&self, cands: &[Far], keep: usize, out: &mut Vec<u32>) {
        out.clear();
        for &Far(d, c) in cands {
            if out.len() >= keep {
                break;
            }
            if out.iter().all(|&r| self.dist(c, r) >= d) {
                out.push(c);
            }
        }
    }

    fn insert(&self, q: u32, w: &mut Work) {
        let level = self.levels[q as usize] as usize;
        let entry_guard = self.entry.read();
        let Some((mut ep, top)) = *entry_guard else {
            drop(entry_guard);
            let mut e = self.entry.write();
            if e.is_none() {
                *e = Some((q, level));
                self.done[q as usize].store(true, Ordering::Release);
                return;
            }
            drop(e);
            return self.insert(q, w);
        };
        drop(entry_guard);
        // A node above the current top keeps the entry lock for its whole insert.
        let mut top_lock = if level > top {
            let e = self.entry.write();
            match *e {
                Some((_, t)) if level > t => Some(e),
                _ => None,
            }
        } else {
            None
        };
        let (ep0, top) = match &top_lock {
            Some(e) => e.unwrap_or((ep, top)),
            None => self.entry.read().unwrap_or((ep, top)),
        };
        ep = ep0;
        let mut d_ep = self.dist(q, ep);
        for l in (level + 1..=top).rev() {
            let mut changed = true;
            while changed {
                changed = false;
                self.copy_links(ep, l, &mut w.buf);
                for &nb in w.buf.iter() {
                    if !self.done[nb as usize].load(Ordering::Acquire) {
                        continue;
                    }
                    let d = self.dist(q, nb);
                    if d < d_ep {
                        d_ep = d;
                        ep = nb;
                        changed = true;
                    }
                }
            }
        }
        let mut selected = Vec::with_capacity(self.m0);
        let mut scratch = Vec::with_capacity(self.m0 + 1);
        let mut pruned = Vec::with_capacity(self.m0);
        let mut sorted = Vec::with_capacity(self.efc);
        for l in (0..=level.min(top)).rev() {
            self.search_level(q, ep, l, self.efc, w, &mut sorted);
            sorted.retain(|f| f.1 != q);
            self.heuristic(&sorted, self.m, &mut selected);
            if let Some(&Far(_, nearest)) = sorted
                .iter()
                .find(|f| self.done[f.1 as usize].load(Ordering::Acquire))
            {
                ep = nearest;
            }
            let cap = if l == 0 { self.m0 } else { self.m };
            {
                // A concurrent insert that found this node on a level above may already have
                // linked itself here: keep those links (overwriting them orphans that node).
                let mut g = self.nodes[q as usize].lock();
                let list = &mut g[l];
                if list.is_empty() {
                    list.extend_from_slice(&selected);
                } else {
                    for &s in &selected {
                        if !list.contains(&s) {
                            list.push(s);
                        }
                    }
                    if list.len() > cap {
                        scratch.clear();
                        scratch.extend(list.iter().map(|&o| Far(self.dist(q, o), o)));
                        scratch.sort_unstable();
                        self.heuristic(&scratch, cap, &mut pruned);
                        list.clear();
                        list.extend_from_slice(&pruned);
                    }
                }
            }
            for &nb in &selected {
                let mut g = self.nodes[nb as usize].lock();
                let list = &mut g[l];
                if list.contains(&q) {
                    continue;
                }
                if list.len() < cap {
                    list.push(q);
                    continue;
                }
                scratch.clear();
                scratch.push(Far(self.dist(nb, q), q));
                scratch.extend(list.iter().map(|&o| Far(self.dist(nb, o), o)));
                scratch.sort_unstable();
                self.heuristic(&scratch, cap, &mut pruned);
                list.clear();
                list.extend_from_slice(&pruned);
            }
        }
        self.done[q as usize].store(true, Ordering::Release);
        if let Some(e) = top_lock.as_mut() {
            **e = Some((q, level));
        }
    }
}

/// Builds a graph over `rows` (prepared vectors of length `dim`; node i = row i). Rows are
/// borrowed, not copied: a rebuild's memory is the rows it already holds plus the links.
pub fn build(
    metric: Metric,
    dim: usize,
    rows: &[&[f32]],
    params: &BuildParams,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<NativeGraph> {
    if dim == 0 || rows.is_empty() || rows.iter().any(|r| r.len() != dim) {
        return Err(IndexError::Parameter(format!(
            "build needs at least one row, every row of dim {dim}"
        )));
    }
    if params.m < 2 || params.m > 512 || params.ef_construction < params.m {
        return Err(IndexError::Parameter(format!(
            "need 2 ≤ m ≤ 512 ≤ …, ef_construction ≥ m: m {} efc {}",
            params.m, params.ef_construction
        )));
    }
    let n = rows.len();
    if n >= u32::MAX as usize {
        return Err(IndexError::Parameter(format!(
            "{n} rows exceed the u32 node ids"
        )));
    }
    let mult = 1.0 / (params.m as f64).ln();
    let levels: Vec<u8> = (0..n as u64)
        .map(|i| {
            // splitmix64 of (seed, node): independent of insertion order and thread count.
            let mut z = params
                .seed
                .wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            ((-u.ln() * mult) as usize).min(MAX_LEVELS - 1) as u8
        })
        .collect();
    let nodes = levels
        .iter()
        .map(|&l| Mutex::new(vec![Vec::new(); l as usize + 1]))
        .collect();
    let shared = Shared {
        kernel: Kernel::detect(metric),
        rows,
        m: params.m,
        m0: 2 * params.m,
        efc: params.ef_construction,
        levels: &levels,
        nodes,
        done: (0..n).map(|_| AtomicBool::new(false)).collect(),
        entry: RwLock::new(None),
    };
    let threads = if params.threads == 0 {
        std::thread::available_parallelism().map_or(1, |t| t.get())
    } else {
        params.threads
    };
    let next = AtomicUsize::new(1);
    let done = AtomicUsize::new(0);
    shared.insert(0, &mut Work::default());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut work = Work::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    shared.insert(i as u32, &mut work);
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if d.is_multiple_of(4096) {
                        progress(d);
                    }
                }
            });
        }
    });
    progress(n);
    let entry = shared.entry.read().map_or(0, |e| e.0);
    let links = shared.nodes.into_iter().map(|m| m.into_inner()).collect();
    Ok(NativeGraph {
        metric,
        dim,
        m: params.m,
        ef_construction: params.ef_construction,
        levels,
        entry,
        links,
    })
}

impl NativeGraph {
    /// Writes the graph with `ids` (ascending, one per node) and `rows` as a graph file.
    pub fn write(&self, path: &Path, ids: &[u64], rows: &[&[f32]]) -> Result<u64> {
        let dim = self.dim;
        let vector = |i: usize| rows[i];
        let neighbours = |node: u32, level: usize, out: &mut Vec<u32>| {
            if let Some(l) = self.links[node as usize].get(level) {
                out.extend_from_slice(l);
            }
        };
        graph_file::write(
            path,
            &GraphSource {
                metric: self.metric,
                dim,
                m: self.m,
                m0: 2 * self.m,
                ef_construction: self.ef_construction,
                builder: Builder::Native,
                ids,
                vector: &vector,
                levels: &self.levels,
                entry: self.entry,
                neighbours: &neighbours,
            },
        )
    }
}
