//! `HnswGraph`: one hnsw_rs graph over prepared vectors — built in memory, dumped into a
//! generation folder, reloaded with its data file memory-mapped.
//!
//! Parameters (hnswlib naming):
//! - `m` (hnsw_rs `max_nb_connection`): links per node per layer. 16 is the usual sweet spot;
//!   higher helps high-dimensional or hard data at the cost of memory and build time. ≤ 256.
//! - `ef_construction`: beam width while inserting. Higher builds a better graph, slower.
//! - `ef` (search time, per query): beam width in layer 0; recall rises with it, speed falls.
//!   Chosen by the planner ([`crate::plan::PlannerConfig::ef`]), which keeps it at least k;
//!   this module takes it as given.

use crate::error::{IndexError, Result};
use crate::graph_file::Builder;
use crate::metric::Metric;
use crate::topk::Scored;
use dist::{DistDot, DistL2};
use hnsw_rs::prelude::{AnnT, Hnsw, HnswIo, ReloadOptions};
use serde::{Deserialize, Serialize};
use std::mem::ManuallyDrop;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    pub m: usize,
    pub ef_construction: usize,
    /// hnsw_rs caps layers at 16; the level scale follows from `m`.
    pub max_layer: usize,
    /// Which builder writes a generation's graph file (`index.builder`). Manifests written
    /// before the flat format lack the field; they read as the hnsw_rs builder they used.
    #[serde(default = "legacy_builder")]
    pub builder: Builder,
}

fn legacy_builder() -> Builder {
    Builder::HnswRs
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            max_layer: 16,
            builder: Builder::Native,
        }
    }
}

impl HnswParams {
    pub fn validate(&self) -> Result<()> {
        // hnsw_rs calls process::exit on m > 256 instead of returning an error.
        if self.m < 2 || self.m > 256 {
            return Err(IndexError::Parameter(format!(
                "m must be in 2..=256, got {}",
                self.m
            )));
        }
        if self.ef_construction < self.m {
            return Err(IndexError::Parameter(format!(
                "ef_construction ({}) must be at least m ({})",
                self.ef_construction, self.m
            )));
        }
        if self.max_layer == 0 || self.max_layer > 16 {
            return Err(IndexError::Parameter(format!(
                "max_layer must be in 1..=16, got {}",
                self.max_layer
            )));
        }
        Ok(())
    }
}

enum AnyHnsw {
    Dot(Hnsw<'static, f32, DistDot>),
    L2(Hnsw<'static, f32, DistL2>),
}

/// A graph plus, when reloaded, the `HnswIo` that owns its memory map.
///
/// hnsw_rs's reloaded `Hnsw<'b>` borrows the `HnswIo` it came from (`load_hnsw(&'b mut self)`),
/// so the loader lives on the heap at a stable address, the graph is declared `'static`, and
/// `Drop` releases the graph strictly before the loader. Nothing else touches the loader.
pub struct HnswGraph {
    metric: Metric,
    graph: ManuallyDrop<AnyHnsw>,
    loader: Option<*mut HnswIo>,
    len: usize,
}

// SAFETY: the hnsw_rs graph is Send + Sync (its search and insert take &self and lock
// internally); the raw loader pointer is only dereferenced at construction and in Drop.
unsafe impl Send for HnswGraph {}
unsafe impl Sync for HnswGraph {}

impl Drop for HnswGraph {
    fn drop(&mut self) {
        // SAFETY: graph is dropped exactly once, here, before the loader it borrows from.
        unsafe { ManuallyDrop::drop(&mut self.graph) };
        if let Some(loader) = self.loader.take() {
            // SAFETY: produced by Box::into_raw in `load` and never freed elsewhere.
            drop(unsafe { Box::from_raw(loader) });
        }
    }
}

impl HnswGraph {
    /// Builds a graph with hnsw_rs's parallel insert (rayon, all cores), reporting progress
    /// after each chunk. `rows` hold prepared vectors.
    pub fn build(
        metric: Metric,
        params: &HnswParams,
        rows: &[(u64, &[f32])],
        progress: &mut dyn FnMut(usize),
    ) -> Result<HnswGraph> {
        params.validate()?;
        let n = rows.len().max(1);
        let graph = match metric {
            Metric::Cosine => AnyHnsw::Dot(Hnsw::new(
                params.m,
                n,
                params.max_layer,
                params.ef_construction,
                DistDot {},
            )),
            Metric::L2 => AnyHnsw::L2(Hnsw::new(
                params.m,
                n,
                params.max_layer,
                params.ef_construction,
                DistL2 {},
            )),
        };
        const CHUNK: usize = 4096;
        let mut done = 0;
        for chunk in rows.chunks(CHUNK) {
            let batch: Vec<(&[f32], usize)> =
                chunk.iter().map(|(id, v)| (*v, *id as usize)).collect();
            match &graph {
                AnyHnsw::Dot(h) => h.parallel_insert_slice(&batch),
                AnyHnsw::L2(h) => h.parallel_insert_slice(&batch),
            }
            done += chunk.len();
            progress(done);
        }
        Ok(HnswGraph {
            metric,
            graph: ManuallyDrop::new(graph),
            loader: None,
            len: rows.len(),
        })
    }

    /// Writes `<dir>/<basename>.hnsw.graph` and `.hnsw.data`.
    pub fn dump(&self, dir: &Path, basename: &str) -> Result<()> {
        let written = match &*self.graph {
            AnyHnsw::Dot(h) => h.file_dump(dir, basename),
            AnyHnsw::L2(h) => h.file_dump(dir, basename),
        }
        .map_err(|e| IndexError::Hnsw(format!("dump failed: {e}")))?;
        // hnsw_rs picks a random name instead of overwriting when the graph itself is mapped.
        if written != basename {
            return Err(IndexError::Hnsw(format!(
                "dump wrote {written} instead of {basename}"
            )));
        }
        Ok(())
    }

    /// Reloads a dumped graph with the data file memory-mapped. The caller must have verified
    /// the files (sizes, checksums): hnsw_rs exits the process on some malformed inputs.
    pub fn load(dir: &Path, basename: &str, metric: Metric, len: usize) -> Result<HnswGraph> {
        let options = ReloadOptions::default().set_mmap(true);
        let loader = Box::into_raw(Box::new(HnswIo::new_with_options(dir, basename, options)));
        // SAFETY: `loader` stays allocated until this HnswGraph's Drop, after the graph.
        let io: &'static mut HnswIo = unsafe { &mut *loader };
        let graph = match metric {
            Metric::Cosine => io.load_hnsw::<f32, DistDot>().map(AnyHnsw::Dot),
            Metric::L2 => io.load_hnsw::<f32, DistL2>().map(AnyHnsw::L2),
        };
        match graph {
            Ok(graph) => Ok(HnswGraph {
                metric,
                graph: ManuallyDrop::new(graph),
                loader: Some(loader),
                len,
            }),
            Err(e) => {
                // SAFETY: no graph borrows the loader on this path.
                drop(unsafe { Box::from_raw(loader) });
                Err(IndexError::Hnsw(format!(
                    "reload of {basename} failed: {e}"
                )))
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_mapped(&self) -> bool {
        self.loader.is_some()
    }

    /// Approximate k nearest neighbours among ids that pass `accept`.
    ///
    /// First an unfiltered beam search of width `ef` whose whole beam is then filtered; only when
    /// fewer than k beam entries pass does it fall back to hnsw_rs's filtered search (the filter
    /// applied inside the layer-0 traversal: rejected nodes still route but are never returned).
    /// The two steps exist because hnsw_rs 0.3.5's `search_layer` only takes the HNSW early exit
    /// when the filter is `None`: with any filter, even the all-pass one the server passes when
    /// nothing is deleted, it expands every remaining candidate, several times the work at equal
    /// ef (see BENCHMARKS.md, "ANN index vs hnswlib and faiss"). The beam holds the ef nearest
    /// points found, so the accepted ones among them are the nearest accepted ones found.
    ///
    /// `ef` must be at least k (the planner's rule). This strategy is internal to one graph;
    /// whether to widen the beam or give up on the graph is the planner's decision.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: &dyn Fn(u64) -> bool,
    ) -> Vec<Scored> {
        if k == 0 || self.len == 0 {
            return Vec::new();
        }
        debug_assert!(ef >= k, "ef {ef} below k {k}: the planner keeps ef >= k");
        let beam = match &*self.graph {
            AnyHnsw::Dot(h) => h.search_filter(query, ef, ef, None),
            AnyHnsw::L2(h) => h.search_filter(query, ef, ef, None),
        };
        let beam_len = beam.len();
        let mut hits: Vec<Scored> = beam
            .into_iter()
            .filter(|n| accept(n.d_id as u64))
            .map(|n| Scored {
                id: n.d_id as u64,
                score: self.metric.score_from_graph_distance(n.distance),
            })
            .collect();
        if hits.len() < k && beam_len < self.len {
            let filter = |id: &usize| accept(*id as u64);
            let neighbours = match &*self.graph {
                AnyHnsw::Dot(h) => h.search_filter(query, k, ef, Some(&filter)),
                AnyHnsw::L2(h) => h.search_filter(query, k, ef, Some(&filter)),
            };
            hits = neighbours
                .into_iter()
                .map(|n| Scored {
                    id: n.d_id as u64,
                    score: self.metric.score_from_graph_distance(n.distance),
                })
                .collect();
        }
        hits.sort_by(Scored::better_first);
        hits.truncate(k);
        hits
    }

    /// hnsw_rs's point indexation (layers, points, neighbour lists), for the exporter.
    pub(crate) fn indexation(&self) -> &hnsw_rs::hnsw::PointIndexation<'static, f32> {
        match &*self.graph {
            AnyHnsw::Dot(h) => h.get_point_indexation(),
            AnyHnsw::L2(h) => h.get_point_indexation(),
        }
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Points per layer, for status reporting.
    pub fn layer_counts(&self) -> Vec<usize> {
        let indexation = match &*self.graph {
            AnyHnsw::Dot(h) => h.get_point_indexation(),
            AnyHnsw::L2(h) => h.get_point_indexation(),
        };
        let mut counts = Vec::new();
        for layer in 0..16 {
            let c = indexation.get_layer_nb_point(layer);
            if c == 0 && layer > 0 {
                break;
            }
            counts.push(c);
        }
        counts
    }
}

/// Distance kernels handed to hnsw_rs in place of anndists' `DistL2` / `DistDot`.
///
/// anndists 0.1.5 (feature `simdeez_f`) runs one 8-lane accumulator per call, so every
/// iteration waits for the previous add (latency-bound: ~3-4 cycles per 8 floats), goes
/// through two levels of runtime feature dispatch and asserts, per distance. These call the
/// crate's kernels (`kernel.rs`: AVX-512, AVX2+FMA with four accumulators, or portable, picked
/// once per process), the same ones the flat graph searches with. Results equal anndists' up to float
/// rounding: L2 is the Euclidean distance (with sqrt), Dot is `max(0, 1 - <a,b>)`.
///
/// The struct names must stay `DistL2` / `DistDot`: hnsw_rs records the distance's type name
/// in a dump and on reload compares only its last path segment, so generations written with
/// anndists' types load with these and vice versa.
mod dist {
    use crate::kernel::Kernel;
    use crate::metric::Metric;
    use hnsw_rs::prelude::Distance;
    use std::sync::OnceLock;

    #[derive(Default, Clone, Copy)]
    pub struct DistL2;

    #[derive(Default, Clone, Copy)]
    pub struct DistDot;

    impl Distance<f32> for DistL2 {
        #[inline]
        fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
            l2_squared(a, b).max(0.0).sqrt()
        }
    }

    impl Distance<f32> for DistDot {
        #[inline]
        fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
            (1.0 - dot(a, b)).max(0.0)
        }
    }

    // The crate's runtime-dispatched kernels (`kernel.rs`), picked once per process; the
    // flat graph searches with the same ones.
    fn kernels() -> &'static (Kernel, Kernel) {
        static KERNELS: OnceLock<(Kernel, Kernel)> = OnceLock::new();
        KERNELS.get_or_init(|| (Kernel::detect(Metric::L2), Kernel::detect(Metric::Cosine)))
    }

    /// Squared Euclidean distance.
    #[inline]
    pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        kernels().0.distance(a, b)
    }

    /// Inner product (the cosine kernel's distance is `1 - <a,b>`).
    #[inline]
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        1.0 - kernels().1.distance(a, b)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn kernels_match_scalar_on_many_lengths() {
            for n in [1usize, 7, 8, 9, 31, 32, 33, 50, 100, 784] {
                let a: Vec<f32> = (0..n)
                    .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
                    .collect();
                let b: Vec<f32> = (0..n)
                    .map(|i| ((i * 104729) % 89) as f32 / 89.0 - 0.5)
                    .collect();
                let l2: f64 = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| ((x - y) as f64).powi(2))
                    .sum();
                let ip: f64 = a.iter().zip(&b).map(|(x, y)| (x * y) as f64).sum();
                assert!(
                    (l2_squared(&a, &b) as f64 - l2).abs() < 1e-3 * (1.0 + l2),
                    "l2 n={n}"
                );
                assert!(
                    (dot(&a, &b) as f64 - ip).abs() < 1e-3 * (1.0 + ip.abs()),
                    "dot n={n}"
                );
                assert_eq!(DistL2.eval(&a, &a), 0.0);
            }
        }

        #[test]
        fn type_names_end_like_anndists() {
            // hnsw_rs's reload compares the last `::` segment of the dumped distance type name.
            let last = |s: &'static str| s.rsplit("::").next().unwrap();
            assert_eq!(
                last(std::any::type_name::<DistL2>()),
                last(std::any::type_name::<hnsw_rs::prelude::DistL2>())
            );
            assert_eq!(
                last(std::any::type_name::<DistDot>()),
                last(std::any::type_name::<hnsw_rs::prelude::DistDot>())
            );
        }
    }
}
