//! Plans executed over a real generation (hnsw_rs graph, mmapped vectors) plus a mutable
//! layer, the way the collection searches: tombstones and filters come in through `accept`
//! and `candidates`, exact answers equal brute force.

mod common;

use mmsearch_index::{
    plan, FlatLayer, Generation, GenerationWriter, HnswParams, Layer, Matching, Metric, Path,
    PlanInput, PlannerConfig, Scored, SpaceSpec, SpaceView,
};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Records the beam widths a layer is searched with. `beam_only` makes a graph layer return
/// just the accepted part of its unfiltered beam: hnsw_rs's filtered fallback inside
/// `HnswGraph::search` expands the whole graph when the filter rejects most of the beam, so on
/// small data it always finds every live point and the planner's later steps never run. A
/// graph without that fallback (the replacement graph a later issue brings may be one) comes
/// back short when tombstones crowd its beam, which is what the widened and exact steps are for.
struct Recorded<'a> {
    inner: &'a dyn Layer,
    beam_only: bool,
    efs: RefCell<Vec<usize>>,
}

impl<'a> Recorded<'a> {
    fn new(inner: &'a dyn Layer) -> Self {
        Recorded {
            inner,
            beam_only: false,
            efs: RefCell::new(Vec::new()),
        }
    }

    fn beam_only(inner: &'a dyn Layer) -> Self {
        Recorded {
            beam_only: true,
            ..Recorded::new(inner)
        }
    }
}

impl Layer for Recorded<'_> {
    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: &dyn Fn(u64) -> bool,
    ) -> Vec<Scored> {
        self.efs.borrow_mut().push(ef);
        if !self.beam_only {
            return self.inner.search(query, k, ef, accept);
        }
        let mut beam = self.inner.search(query, ef, ef, &|_| true);
        beam.retain(|s| accept(s.id));
        beam.truncate(k);
        beam
    }
    fn vector(&self, id: u64) -> Option<&[f32]> {
        self.inner.vector(id)
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
}

/// A base generation of `base` rows plus a mutable layer of `fresh` newer rows, and every
/// row by id for brute force.
struct Space {
    _dir: tempfile::TempDir,
    generation: Generation,
    fresh: FlatLayer,
    rows: HashMap<u64, Vec<f32>>,
    spec: SpaceSpec,
}

impl Space {
    fn build(spec: SpaceSpec, data: Vec<(u64, Vec<f32>)>, base: usize) -> Space {
        let dir = tempfile::tempdir().unwrap();
        let refs: Vec<(u64, &[f32])> = data[..base]
            .iter()
            .map(|(i, v)| (*i, v.as_slice()))
            .collect();
        let mut w = GenerationWriter::create(dir.path(), 1, data[base - 1].0).unwrap();
        w.add_space(&spec, &HnswParams::default(), &refs, 10, &mut |_| {})
            .unwrap();
        let generation =
            Generation::open(&w.commit().unwrap(), std::slice::from_ref(&spec)).unwrap();
        assert!(generation.segment(&spec.name).unwrap().flat.is_some());
        let mut fresh = FlatLayer::new(spec.dim, spec.metric);
        for (id, v) in &data[base..] {
            fresh.insert(*id, v);
        }
        Space {
            _dir: dir,
            generation,
            fresh,
            rows: data.into_iter().collect(),
            spec,
        }
    }

    fn live_ids(&self, accept: &dyn Fn(u64) -> bool) -> Vec<u64> {
        let mut ids: Vec<u64> = self.rows.keys().copied().filter(|&id| accept(id)).collect();
        ids.sort_unstable();
        ids
    }

    fn brute_force(&self, query: &[f32], k: usize, accept: &dyn Fn(u64) -> bool) -> Vec<Scored> {
        let mut all: Vec<Scored> = self
            .rows
            .iter()
            .filter(|(id, _)| accept(**id))
            .map(|(id, v)| Scored {
                id: *id,
                score: self.spec.metric.score(query, v),
            })
            .collect();
        all.sort_by(Scored::better_first);
        all.truncate(k);
        all
    }
}

fn random_rows(n: usize, dim: usize, seed: u64) -> Vec<(u64, Vec<f32>)> {
    common::random_rows(n, dim, seed, |i| i as u64 + 1)
}

fn cosine_space() -> Space {
    Space::build(
        SpaceSpec {
            name: "shared".into(),
            dim: 16,
            metric: Metric::Cosine,
        },
        random_rows(2_050, 16, 9),
        2_000,
    )
}

fn ids(hits: &[Scored]) -> Vec<u64> {
    hits.iter().map(|s| s.id).collect()
}

/// Points (i, 0) on a line, ids 0..2000 in the base and 2000..2003 fresh; the query sits at 0.
fn line_space() -> Space {
    let spec = SpaceSpec {
        name: "line".into(),
        dim: 2,
        metric: Metric::L2,
    };
    let data: Vec<(u64, Vec<f32>)> = (0..2_003u64).map(|i| (i, vec![i as f32, 0.0])).collect();
    Space::build(spec, data, 2_000)
}

const ORIGIN: [f32; 2] = [0.0, 0.0];

#[test]
fn tombstones_crowding_the_first_beam_widen_it() {
    let space = line_space();
    let base = Recorded::beam_only(space.generation.segment("line").unwrap());
    let fresh = Recorded::new(&space.fresh);
    let view = SpaceView::new(Metric::L2, vec![&fresh, &base]);
    let accept = |id: u64| id >= 30; // the 30 nearest are deleted
    let live = space.live_ids(&accept);
    let p = plan(
        &PlannerConfig::default(),
        &PlanInput {
            k: 10,
            ef: Some(10),
            live: live.len(),
            matching: Matching::All,
        },
    );
    let listed = Cell::new(0);
    let out = view.execute(&p, &ORIGIN, &accept, &mut || {
        listed.set(listed.get() + 1);
        live.clone()
    });
    assert_eq!(
        *base.efs.borrow(),
        vec![10, 80],
        "first beam, then the widened one"
    );
    assert_eq!(
        *fresh.efs.borrow(),
        vec![10, 80],
        "every layer takes part in each graph step"
    );
    assert_eq!(
        (out.path, out.exact, listed.get()),
        (Path::GraphWidened, false, 1)
    );
    assert_eq!(ids(&out.hits), (30..40).collect::<Vec<_>>());
}

#[test]
fn tombstones_beyond_every_beam_widen_then_scan_exactly() {
    let space = line_space();
    let base = Recorded::beam_only(space.generation.segment("line").unwrap());
    let fresh = Recorded::new(&space.fresh);
    let view = SpaceView::new(Metric::L2, vec![&fresh, &base]);
    let accept = |id: u64| id >= 1_000; // the nearest half is deleted
    let live = space.live_ids(&accept);
    let p = plan(
        &PlannerConfig::default(),
        &PlanInput {
            k: 10,
            ef: Some(10),
            live: live.len(),
            matching: Matching::All,
        },
    );
    let listed = Cell::new(0);
    let out = view.execute(&p, &ORIGIN, &accept, &mut || {
        listed.set(listed.get() + 1);
        live.clone()
    });
    assert_eq!(*base.efs.borrow(), vec![10, 80]);
    assert_eq!(
        (out.path, out.exact, listed.get()),
        (Path::Exact, true, 1),
        "the candidates are listed once"
    );
    assert_eq!(ids(&out.hits), (1_000..1_010).collect::<Vec<_>>());
    assert_eq!(out.hits, space.brute_force(&ORIGIN, 10, &accept));
}

#[test]
fn hnsw_filtered_fallback_finds_even_far_live_points_in_the_first_step() {
    // Deletions against the real segment: its filtered fallback walks on until it finds the
    // 8 live points at the far end, all there are, so the first step is normally final (which
    // step answers is hnsw_rs's business; that the answer is complete is the executor's).
    let space = line_space();
    let view = SpaceView::new(
        Metric::L2,
        vec![&space.fresh, space.generation.segment("line").unwrap()],
    );
    let accept = |id: u64| id >= 1_995;
    let live = space.live_ids(&accept);
    let p = plan(
        &PlannerConfig::default(),
        &PlanInput {
            k: 10,
            ef: Some(10),
            live: live.len(),
            matching: Matching::All,
        },
    );
    let out = view.execute(&p, &ORIGIN, &accept, &mut || live.clone());
    assert_eq!(
        out.hits,
        space.brute_force(&ORIGIN, 10, &accept),
        "all 8 live points, in order"
    );
}

#[test]
fn no_tombstones_the_first_beam_answers_without_the_catalogue() {
    let space = cosine_space();
    let base = Recorded::new(space.generation.segment("shared").unwrap());
    let view = SpaceView::new(Metric::Cosine, vec![&space.fresh, &base]);
    let p = plan(
        &PlannerConfig::default(),
        &PlanInput {
            k: 10,
            ef: None,
            live: 2_050,
            matching: Matching::All,
        },
    );
    let mut recall = 0;
    for (id, q) in space.rows.iter().filter(|(id, _)| *id % 97 == 0) {
        let out = view.execute(&p, q, &|_| true, &mut || {
            panic!("a full first beam needs no candidates")
        });
        assert_eq!((out.path, out.exact), (Path::Graph, false));
        assert_eq!(out.hits[0].id, *id, "a stored vector finds itself first");
        let truth = ids(&space.brute_force(q, 10, &|_| true));
        recall += out.hits.iter().filter(|h| truth.contains(&h.id)).count();
    }
    assert!(base.efs.borrow().iter().all(|&ef| ef == 64));
    let queries = space.rows.keys().filter(|id| *id % 97 == 0).count();
    assert!(
        recall as f64 / (queries * 10) as f64 > 0.9,
        "recall {recall}/{}",
        queries * 10
    );
}

#[test]
fn selective_filter_scores_its_matches_exactly() {
    let space = cosine_space();
    let base = Recorded::new(space.generation.segment("shared").unwrap());
    let fresh = Recorded::new(&space.fresh);
    let view = SpaceView::new(Metric::Cosine, vec![&fresh, &base]);
    let accept = |id: u64| id.is_multiple_of(50); // 41 of 2050, one of them fresh
    let matching = space.live_ids(&accept);
    assert!(matching.iter().any(|&id| id > 2_000));
    let p = plan(
        &PlannerConfig::default(),
        &PlanInput {
            k: 10,
            ef: None,
            live: 2_050,
            matching: Matching::Exact(matching.len()),
        },
    );
    for q in space.rows.values().take(20) {
        let out = view.execute(&p, q, &accept, &mut || matching.clone());
        assert_eq!((out.path, out.exact), (Path::Exact, true));
        assert_eq!(out.hits, space.brute_force(q, 10, &accept));
    }
    assert!(
        base.efs.borrow().is_empty() && fresh.efs.borrow().is_empty(),
        "no graph step ran"
    );
}

#[test]
fn broad_filter_walks_the_graph_and_only_returns_matches() {
    let space = cosine_space();
    let view = SpaceView::new(
        Metric::Cosine,
        vec![&space.fresh, space.generation.segment("shared").unwrap()],
    );
    let accept = |id: u64| id.is_multiple_of(2);
    let matching = space.live_ids(&accept);
    // A sampled estimate of about half the space, above a threshold of 100.
    let config = PlannerConfig {
        exact_scan_threshold: 100,
        ..PlannerConfig::default()
    };
    let p = plan(
        &config,
        &PlanInput {
            k: 10,
            ef: None,
            live: 2_050,
            matching: Matching::Sampled {
                matched: 49,
                sampled: 100,
            },
        },
    );
    assert_eq!(p.estimated_matches, 1_005);
    let mut recall = 0;
    for q in space.rows.values().take(20) {
        let out = view.execute(&p, q, &accept, &mut || matching.clone());
        assert_eq!(out.hits.len(), 10);
        assert!(out.hits.iter().all(|h| accept(h.id)));
        assert!(
            out.hits
                .windows(2)
                .all(|w| Scored::better_first(&w[0], &w[1]).is_lt()),
            "best first, no duplicates"
        );
        let truth = ids(&space.brute_force(q, 10, &accept));
        recall += out.hits.iter().filter(|h| truth.contains(&h.id)).count();
        if out.exact {
            assert_eq!(ids(&out.hits), truth);
        }
    }
    assert!(recall as f64 / 200.0 > 0.9, "recall {recall}/200");
}

#[test]
fn crowded_beam_still_returns_live_hits_that_match_brute_force_when_exact() {
    // Delete the 300 nearest neighbours of each query: the answer comes from the graph, the
    // widened graph or the exact scan, but it never holds a tombstone and is complete.
    let space = cosine_space();
    let view = SpaceView::new(
        Metric::Cosine,
        vec![&space.fresh, space.generation.segment("shared").unwrap()],
    );
    let p = plan(
        &PlannerConfig::default(),
        &PlanInput {
            k: 10,
            ef: Some(16),
            live: 1_750,
            matching: Matching::All,
        },
    );
    for q in space.rows.values().take(10) {
        let dead: Vec<u64> = ids(&space.brute_force(q, 300, &|_| true));
        let accept = |id: u64| !dead.contains(&id);
        let out = view.execute(&p, q, &accept, &mut || space.live_ids(&accept));
        assert_eq!(out.hits.len(), 10);
        assert!(out.hits.iter().all(|h| accept(h.id)));
        if out.exact {
            assert_eq!(out.hits, space.brute_force(q, 10, &accept));
        }
    }
}
