//! `SpaceView`: a read snapshot of one space over its layers, and the executor of a [`Plan`].
//!
//! The caller holds whatever lock keeps the layers alive and consistent with its catalogue
//! for the duration of one query, builds a view over them, and hands `execute` the plan plus
//! two views of its catalogue: `accept` (is this id live and does it pass the filter?) and
//! `candidates` (all such ids, for counting and exact scans). The executor calls `candidates`
//! at most once, and only when a step came back short or the plan scans exactly, so an
//! unfiltered query that the graph answers never walks the catalogue.

use crate::layer::Layer;
use crate::metric::Metric;
use crate::plan::{Path, Plan, Step};
use crate::topk::{Scored, TopK};
use std::collections::HashSet;

pub struct SpaceView<'a> {
    pub metric: Metric,
    /// Newest first (mutable layer, then the base segment): an id held by two layers — a
    /// rebuild folded it into the base before the mutable layer let go of it — is read from
    /// the first. Both hold the same vector, ids being unique per stored version.
    pub layers: Vec<&'a dyn Layer>,
}

/// A query's answer and how it was reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Best first, one entry per id, at most k.
    pub hits: Vec<Scored>,
    /// Whether the hits are the true top k (an exact scan), not an approximation.
    pub exact: bool,
    /// The step that produced the hits.
    pub path: Path,
}

impl<'a> SpaceView<'a> {
    pub fn new(metric: Metric, layers: Vec<&'a dyn Layer>) -> Self {
        SpaceView { metric, layers }
    }

    /// Runs `plan`'s steps in order until one is final: it is the last, or it returned k hits,
    /// or it returned every candidate there is (at least min(k, possible)). `candidates` must
    /// return the live ids of this space that pass the filter, without duplicates — the same
    /// set `accept` describes; ids that no layer holds are skipped by the exact scan.
    /// A plan without steps gets the exact scan, which is always correct.
    pub fn execute(
        &self,
        plan: &Plan,
        query: &[f32],
        accept: &dyn Fn(u64) -> bool,
        candidates: &mut dyn FnMut() -> Vec<u64>,
    ) -> Outcome {
        let k = plan.k;
        let (&last, earlier) = plan.steps.split_last().unwrap_or((&Step::Exact, &[]));
        // Fetched at most once: the count that decides whether a short step is final is the
        // list the exact step then scores.
        let mut pool: Option<Vec<u64>> = None;
        for &step in earlier {
            let hits = self.run(step, query, k, accept, &mut pool, candidates);
            if hits.len() >= k {
                return outcome(step, hits);
            }
            let possible = pool.get_or_insert_with(&mut *candidates).len();
            if hits.len() >= possible {
                return outcome(step, hits);
            }
        }
        let hits = self.run(last, query, k, accept, &mut pool, candidates);
        outcome(last, hits)
    }

    fn run(
        &self,
        step: Step,
        query: &[f32],
        k: usize,
        accept: &dyn Fn(u64) -> bool,
        pool: &mut Option<Vec<u64>>,
        candidates: &mut dyn FnMut() -> Vec<u64>,
    ) -> Vec<Scored> {
        match step {
            Step::Graph { ef } | Step::GraphWidened { ef } => {
                self.approximate(query, k, ef, accept)
            }
            Step::Exact if k == 0 => Vec::new(),
            Step::Exact => {
                let ids = pool.take().unwrap_or_else(candidates);
                self.exact(query, k, &ids)
            }
        }
    }

    /// Searches every layer with beam `ef` and merges: best first, one entry per id, at most k.
    pub fn approximate(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: &dyn Fn(u64) -> bool,
    ) -> Vec<Scored> {
        let mut merged = Vec::new();
        for layer in self.layers.iter().filter(|l| !l.is_empty()) {
            merged.extend(layer.search(query, k, ef, accept));
        }
        merged.sort_by(Scored::better_first);
        // A graph score and an exact score of one vector may differ in the last bits, so
        // duplicates need not be adjacent after the sort.
        let mut seen = HashSet::with_capacity(merged.len());
        merged.retain(|s| seen.insert(s.id));
        merged.truncate(k);
        merged
    }

    /// Scores `ids` exactly; best first, at most k.
    pub fn exact(&self, query: &[f32], k: usize, ids: &[u64]) -> Vec<Scored> {
        let mut top = TopK::new(k);
        for &id in ids {
            if let Some(row) = self.vector(id) {
                top.push(id, self.metric.score(query, row));
            }
        }
        top.into_sorted()
    }

    /// The stored vector of `id` from the first layer that holds it.
    pub fn vector(&self, id: u64) -> Option<&'a [f32]> {
        self.layers.iter().copied().find_map(|l| l.vector(id))
    }
}

fn outcome(step: Step, hits: Vec<Scored>) -> Outcome {
    Outcome {
        hits,
        exact: step == Step::Exact,
        path: step.path(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan, Matching, PlanInput, PlannerConfig};
    use std::cell::{Cell, RefCell};

    /// A graph stand-in whose beam of width ef holds exactly the ef nearest stored points,
    /// filtered afterwards — the behaviour that makes tombstones crowd out live hits.
    struct BeamLayer {
        rows: Vec<(u64, Vec<f32>)>,
        efs: RefCell<Vec<usize>>,
    }

    impl BeamLayer {
        /// Points (id, 0) on a line for ids in `ids`.
        fn line(ids: impl Iterator<Item = u64>) -> Self {
            BeamLayer {
                rows: ids.map(|i| (i, vec![i as f32, 0.0])).collect(),
                efs: RefCell::new(Vec::new()),
            }
        }
    }

    impl Layer for BeamLayer {
        fn search(
            &self,
            query: &[f32],
            k: usize,
            ef: usize,
            accept: &dyn Fn(u64) -> bool,
        ) -> Vec<Scored> {
            assert!(ef >= k, "the planner guarantees ef >= k");
            self.efs.borrow_mut().push(ef);
            let mut all: Vec<Scored> = self
                .rows
                .iter()
                .map(|(id, v)| Scored {
                    id: *id,
                    score: Metric::L2.score(query, v),
                })
                .collect();
            all.sort_by(Scored::better_first);
            all.truncate(ef);
            all.retain(|s| accept(s.id));
            all.truncate(k);
            all
        }

        fn vector(&self, id: u64) -> Option<&[f32]> {
            self.rows
                .iter()
                .find(|(i, _)| *i == id)
                .map(|(_, v)| v.as_slice())
        }

        fn len(&self) -> usize {
            self.rows.len()
        }
    }

    const ORIGIN: [f32; 2] = [0.0, 0.0];

    fn unfiltered(k: usize, live: usize) -> Plan {
        plan(
            &PlannerConfig::default(),
            &PlanInput {
                k,
                ef: None,
                live,
                matching: Matching::All,
            },
        )
    }

    fn ids(hits: &[Scored]) -> Vec<u64> {
        hits.iter().map(|s| s.id).collect()
    }

    /// Runs `plan` over `layer` with ids below `dead` deleted; returns the outcome and how
    /// often the catalogue was listed.
    fn run_with_tombstones(layer: &BeamLayer, plan: &Plan, dead: u64) -> (Outcome, usize) {
        let view = SpaceView::new(Metric::L2, vec![layer]);
        let calls = Cell::new(0);
        let live: Vec<u64> = layer
            .rows
            .iter()
            .map(|(id, _)| *id)
            .filter(|&id| id >= dead)
            .collect();
        let out = view.execute(plan, &ORIGIN, &|id| id >= dead, &mut || {
            calls.set(calls.get() + 1);
            live.clone()
        });
        (out, calls.get())
    }

    #[test]
    fn first_beam_answers_without_listing_candidates() {
        let layer = BeamLayer::line(0..1_000);
        let (out, calls) = run_with_tombstones(&layer, &unfiltered(10, 1_000), 0);
        assert_eq!((out.path, out.exact, calls), (Path::Graph, false, 0));
        assert_eq!(ids(&out.hits), (0..10).collect::<Vec<_>>());
        assert_eq!(*layer.efs.borrow(), vec![64]);
    }

    #[test]
    fn tombstones_in_the_first_beam_widen_it() {
        let layer = BeamLayer::line(0..1_000);
        let (out, calls) = run_with_tombstones(&layer, &unfiltered(10, 900), 100);
        assert_eq!((out.path, out.exact, calls), (Path::GraphWidened, false, 1));
        assert_eq!(ids(&out.hits), (100..110).collect::<Vec<_>>());
        assert_eq!(*layer.efs.borrow(), vec![64, 512]);
    }

    #[test]
    fn tombstones_past_the_widened_beam_scan_exactly_listing_once() {
        let layer = BeamLayer::line(0..1_000);
        let (out, calls) = run_with_tombstones(&layer, &unfiltered(10, 400), 600);
        assert_eq!((out.path, out.exact, calls), (Path::Exact, true, 1));
        assert_eq!(ids(&out.hits), (600..610).collect::<Vec<_>>());
        assert_eq!(*layer.efs.borrow(), vec![64, 512]);
    }

    #[test]
    fn a_short_answer_holding_every_candidate_is_final() {
        // Only 5 live items: the first beam finds them all, nothing more to look for.
        let layer = BeamLayer::line(0..1_000);
        let view = SpaceView::new(Metric::L2, vec![&layer]);
        let mut calls = 0;
        let out = view.execute(
            &unfiltered(10, 5),
            &ORIGIN,
            &|id| id % 200 == 0,
            &mut || {
                calls += 1;
                vec![0, 200, 400, 600, 800]
            },
        );
        // ids 0..64 hold only id 0 live: 1 hit < 5 possible → widen; 0..512 holds 3.
        assert_eq!(out.path, Path::Exact);
        assert_eq!(ids(&out.hits), vec![0, 200, 400, 600, 800]);
        assert_eq!(calls, 1);

        let view = SpaceView::new(Metric::L2, vec![&layer]);
        let mut calls = 0;
        let out = view.execute(&unfiltered(10, 3), &ORIGIN, &|id| id < 3, &mut || {
            calls += 1;
            vec![0, 1, 2]
        });
        assert_eq!(
            (out.path, ids(&out.hits), calls),
            (Path::Graph, vec![0, 1, 2], 1)
        );
    }

    #[test]
    fn selective_filter_never_touches_the_graph() {
        let layer = BeamLayer::line(0..1_000);
        let view = SpaceView::new(Metric::L2, vec![&layer]);
        let p = plan(
            &PlannerConfig::default(),
            &PlanInput {
                k: 3,
                ef: None,
                live: 1_000,
                matching: Matching::Exact(4),
            },
        );
        let out = view.execute(&p, &[500.0, 0.0], &|id| id % 250 == 0, &mut || {
            vec![0, 250, 500, 750]
        });
        assert_eq!((out.path, out.exact), (Path::Exact, true));
        assert_eq!(ids(&out.hits), vec![500, 250, 750]);
        assert!(layer.efs.borrow().is_empty());
    }

    #[test]
    fn broad_filter_falls_back_to_exact_without_widening() {
        let layer = BeamLayer::line(0..10_000);
        let view = SpaceView::new(Metric::L2, vec![&layer]);
        // 5000 odd ids match, but the beam near the origin only holds ids below 64: 32 odd.
        let p = plan(
            &PlannerConfig::default(),
            &PlanInput {
                k: 40,
                ef: None,
                live: 10_000,
                matching: Matching::Exact(5_000),
            },
        );
        let out = view.execute(&p, &ORIGIN, &|id| id % 2 == 1, &mut || {
            (1..10_000).step_by(2).collect()
        });
        assert_eq!(out.path, Path::Exact);
        assert_eq!(ids(&out.hits), (1..80).step_by(2).collect::<Vec<_>>());
        assert_eq!(*layer.efs.borrow(), vec![64]);
    }

    #[test]
    fn layers_merge_best_first_without_duplicates() {
        let base = BeamLayer::line((0..100).step_by(2));
        let fresh = BeamLayer::line([1, 3, 4].into_iter()); // 4 is also in the base
        let view = SpaceView::new(Metric::L2, vec![&fresh, &base]);
        let out = view.execute(
            &unfiltered(5, 53),
            &ORIGIN,
            &|_| true,
            &mut || unreachable!(),
        );
        assert_eq!(ids(&out.hits), vec![0, 1, 2, 3, 4]);
        assert_eq!(
            *fresh.efs.borrow(),
            vec![64],
            "every layer is searched with the plan's ef"
        );
        assert_eq!(
            view.exact(&ORIGIN, 3, &[4, 99, 3]),
            view.approximate(&ORIGIN, 3, 64, &|id| id == 3 || id == 4)
        );
        assert_eq!(view.vector(3), Some(&[3.0f32, 0.0][..]));
        assert_eq!(view.vector(99), None);
    }

    #[test]
    fn empty_layers_are_skipped() {
        let empty = BeamLayer::line(0..0);
        let base = BeamLayer::line(0..10);
        let view = SpaceView::new(Metric::L2, vec![&empty, &base]);
        let out = view.execute(&unfiltered(2, 10), &ORIGIN, &|_| true, &mut Vec::<u64>::new);
        assert_eq!(ids(&out.hits), vec![0, 1]);
        assert!(empty.efs.borrow().is_empty());
    }

    #[test]
    fn k_zero_and_empty_plans() {
        let layer = BeamLayer::line(0..10);
        let view = SpaceView::new(Metric::L2, vec![&layer]);
        let out = view.execute(
            &unfiltered(0, 10),
            &ORIGIN,
            &|_| true,
            &mut || unreachable!(),
        );
        assert_eq!(
            (out.hits.len(), out.exact, out.path),
            (0, true, Path::Exact)
        );
        let bare = Plan {
            k: 2,
            ef: 2,
            estimated_matches: 10,
            steps: Vec::new(),
        };
        let out = view.execute(&bare, &ORIGIN, &|_| true, &mut || (0..10).collect());
        assert_eq!((ids(&out.hits), out.path), (vec![0, 1], Path::Exact));
    }
}
