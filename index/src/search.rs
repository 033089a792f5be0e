//! Beam search over a mapped [`GraphFile`] — hnswlib's search, without per-query allocation.
//!
//! - Upper layers: greedy descent, repeated on each layer until no neighbour is nearer.
//! - Layer 0: best-first beam of width `ef`; stops when the nearest unexpanded candidate is
//!   farther than the worst of `ef` kept results (hnswlib's early exit).
//! - A filter is evaluated during traversal: rejected nodes are still expanded and routed
//!   through but never kept as results, so a filter does not disconnect the graph. With a
//!   filter the beam keeps going until it holds `ef` accepted nodes or runs out of candidates.
//! - Scratch state (visited tags, both heaps) lives in a [`Scratch`] the caller reuses; the
//!   visited set is an array of epoch tags, cleared by bumping the epoch, so a query touches
//!   only the tags of the nodes it visits.
//! - While one node is scored, the next neighbour's vector is prefetched; when a candidate is
//!   popped, the next candidate's link list is.

use crate::graph_file::GraphFile;
use crate::kernel::{prefetch, Kernel};
use crate::topk::Scored;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

const PREFETCH_ROW_BYTES: usize = 128;

/// Visited marks for one search at a time: `tags[node] == epoch` means visited.
pub struct VisitedList {
    tags: Vec<u16>,
    epoch: u16,
}

impl VisitedList {
    pub fn new() -> Self {
        VisitedList {
            tags: Vec::new(),
            epoch: 0,
        }
    }

    /// Starts a new search over `n` nodes: O(1) except when growing or once per 65,535 resets.
    pub fn reset(&mut self, n: usize) {
        if self.tags.len() < n {
            self.tags.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.tags.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `node`; returns whether it was already marked.
    #[inline(always)]
    pub fn check_and_mark(&mut self, node: u32) -> bool {
        let t = &mut self.tags[node as usize];
        let seen = *t == self.epoch;
        *t = self.epoch;
        seen
    }

    #[inline(always)]
    fn prefetch(&self, node: u32) {
        prefetch(
            self.tags.as_ptr().wrapping_add(node as usize) as *const u8,
            1,
        );
    }
}

impl Default for VisitedList {
    fn default() -> Self {
        Self::new()
    }
}

/// (distance, node) ordered by distance then node: a max-heap of these keeps the worst on top.
#[derive(Clone, Copy, PartialEq)]
pub(crate) struct Far(pub f32, pub u32);
impl Eq for Far {}
impl PartialOrd for Far {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Far {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

/// Reversed [`Far`]: a max-heap of these pops the nearest first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Near(pub Far);
impl PartialOrd for Near {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Near {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.cmp(&self.0)
    }
}

/// Per-thread reusable search state. After the first queries have grown it to the largest
/// graph and beam, a search allocates nothing.
#[derive(Default)]
pub struct Scratch {
    pub(crate) visited: VisitedList,
    pub(crate) candidates: BinaryHeap<Near>,
    pub(crate) results: BinaryHeap<Far>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch (a fresh one if a search on this thread is already
/// using it, e.g. re-entered from a filter callback).
pub fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// A searchable view: a graph file plus the kernel chosen for it.
pub struct FlatGraph {
    pub file: GraphFile,
    pub kernel: Kernel,
}

impl FlatGraph {
    pub fn new(file: GraphFile) -> FlatGraph {
        let kernel = Kernel::detect(file.metric);
        FlatGraph { file, kernel }
    }

    pub fn with_kernel(file: GraphFile, kernel: Kernel) -> FlatGraph {
        FlatGraph { file, kernel }
    }

    pub fn len(&self) -> usize {
        self.file.len()
    }

    pub fn is_empty(&self) -> bool {
        self.file.is_empty()
    }

    /// Up to k nearest ids among those `accept` passes (all when `None`), best first, into
    /// `out` (cleared first). `ef` is raised to k if below it. Returns the number of distances
    /// computed (the search's work, independent of the machine).
    pub fn search_into(
        &self,
        scratch: &mut Scratch,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: Option<&dyn Fn(u64) -> bool>,
        out: &mut Vec<Scored>,
    ) -> usize {
        out.clear();
        if k == 0 || query.len() != self.file.dim {
            return 0;
        }
        let mut work = 1;
        let ef = ef.max(k);
        let g = &self.file;
        let kern = &self.kernel;
        let mut ep = g.entry;
        let mut d_ep = kern.distance(query, g.vector(ep));
        for level in (1..=g.max_level).rev() {
            let mut changed = true;
            while changed {
                changed = false;
                for &nb in g.links_upper(ep, level) {
                    work += 1;
                    let d = kern.distance(query, g.vector(nb));
                    if d < d_ep {
                        d_ep = d;
                        ep = nb;
                        changed = true;
                    }
                }
            }
        }
        work += self.search_layer0(scratch, query, ep, d_ep, ef, accept);
        let ids = g.ids();
        let results = &mut scratch.results;
        while results.len() > k {
            results.pop();
        }
        out.extend(results.drain().map(|Far(d, n)| Scored {
            id: ids[n as usize],
            score: kern.score(d),
        }));
        out.sort_by(Scored::better_first);
        work
    }

    /// Leaves the best (up to) `ef` accepted nodes in `scratch.results`; returns the number of
    /// distances computed.
    fn search_layer0(
        &self,
        scratch: &mut Scratch,
        query: &[f32],
        ep: u32,
        d_ep: f32,
        ef: usize,
        accept: Option<&dyn Fn(u64) -> bool>,
    ) -> usize {
        let g = &self.file;
        let mut work = 0;
        let kern = &self.kernel;
        let ids = g.ids();
        let table = g.layer0_table();
        let stride = 1 + g.m0;
        let vectors = g.vectors_raw();
        let rf = g.row_floats();
        let dim = g.dim;
        // The first lines of a row: the hardware prefetcher streams the rest once the kernel
        // starts reading it (a prefetch per line of a 3 KB row cost more than it saved).
        let row_bytes = (dim * 4).min(PREFETCH_ROW_BYTES);
        let Scratch {
            visited,
            candidates,
            results,
        } = scratch;
        visited.reset(g.len());
        candidates.clear();
        results.clear();
        let ok = |n: u32| accept.is_none_or(|f| f(ids[n as usize]));

        visited.check_and_mark(ep);
        candidates.push(Near(Far(d_ep, ep)));
        if ok(ep) {
            results.push(Far(d_ep, ep));
        }
        let mut bound = if results.len() >= ef {
            results.peek().map_or(f32::INFINITY, |f| f.0)
        } else {
            f32::INFINITY
        };
        while let Some(Near(Far(d_c, c))) = candidates.pop() {
            if d_c > bound {
                break;
            }
            if let Some(Near(Far(_, next))) = candidates.peek() {
                prefetch(
                    table.as_ptr().wrapping_add(*next as usize * stride) as *const u8,
                    stride * 4,
                );
            }
            let row = &table[c as usize * stride..(c as usize + 1) * stride];
            let links = &row[1..1 + row[0] as usize];
            if let Some(&first) = links.first() {
                visited.prefetch(first);
                prefetch(
                    vectors.as_ptr().wrapping_add(first as usize * rf) as *const u8,
                    row_bytes,
                );
            }
            for (j, &nb) in links.iter().enumerate() {
                if let Some(&next) = links.get(j + 1) {
                    visited.prefetch(next);
                    prefetch(
                        vectors.as_ptr().wrapping_add(next as usize * rf) as *const u8,
                        row_bytes,
                    );
                }
                if visited.check_and_mark(nb) {
                    continue;
                }
                let start = nb as usize * rf;
                work += 1;
                let d = kern.distance(query, &vectors[start..start + dim]);
                if results.len() < ef || d < bound {
                    candidates.push(Near(Far(d, nb)));
                    if ok(nb) {
                        results.push(Far(d, nb));
                        if results.len() > ef {
                            results.pop();
                        }
                        if results.len() >= ef {
                            bound = results.peek().map_or(f32::INFINITY, |f| f.0);
                        }
                    }
                }
            }
        }
        work
    }

    /// [`FlatGraph::search_into`] with this thread's scratch, returning a fresh vector.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: Option<&dyn Fn(u64) -> bool>,
    ) -> Vec<Scored> {
        let mut out = Vec::with_capacity(k);
        with_scratch(|s| self.search_into(s, query, k, ef, accept, &mut out));
        out
    }

    /// Exact top k among nodes whose id passes `accept` (every node scored).
    pub fn exact(
        &self,
        query: &[f32],
        k: usize,
        accept: Option<&dyn Fn(u64) -> bool>,
    ) -> Vec<Scored> {
        let mut top = crate::topk::TopK::new(k);
        for (i, &id) in self.file.ids().iter().enumerate() {
            if accept.is_none_or(|f| f(id)) {
                top.push(
                    id,
                    self.kernel
                        .score(self.kernel.distance(query, self.file.vector(i as u32))),
                );
            }
        }
        top.into_sorted()
    }
}
