//! The search hot path allocates nothing: a counting global allocator (this test binary only)
//! counts this thread's allocations across many searches with a warmed-up scratch.

use mmsearch_index::builder::{self, BuildParams};
use mmsearch_index::search::Scratch;
use mmsearch_index::synthetic::Clustered;
use mmsearch_index::{FlatGraph, GraphFile, Metric};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a const-initialised thread local
// (no allocation, no re-entrance).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCS.with(|c| c.get())
}

#[test]
fn search_allocates_nothing_after_warm_up() {
    const DIM: usize = 24;
    let mut c = Clustered::new(DIM, 10, 3);
    let rows: Vec<f32> = (0..3_000u64).flat_map(|i| c.row(i, 0, 0.3)).collect();
    let ids: Vec<u64> = (0..3_000).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.graph");
    let refs: Vec<&[f32]> = rows.chunks_exact(DIM).collect();
    let g = builder::build(
        Metric::Cosine,
        DIM,
        &refs,
        &BuildParams {
            m: 12,
            ef_construction: 64,
            threads: 1,
            seed: 1,
        },
        &|_| {},
    )
    .unwrap();
    g.write(&path, &ids, &refs).unwrap();
    let graph = FlatGraph::new(GraphFile::open(&path, DIM, Metric::Cosine).unwrap());
    let queries: Vec<Vec<f32>> = (0..200u64).map(|i| c.row(10_000 + i, 1, 0.3)).collect();
    let odd = |id: u64| id % 2 == 1;
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    // Warm-up at the widest beam: grows the visited list, both heaps and `out` once.
    for q in &queries {
        graph.search_into(&mut scratch, q, 10, 256, None, &mut out);
        graph.search_into(&mut scratch, q, 10, 256, Some(&odd), &mut out);
    }
    let before = allocations();
    let mut found = 0;
    for q in &queries {
        for ef in [16, 64, 256] {
            graph.search_into(&mut scratch, q, 10, ef, None, &mut out);
            found += out.len();
            graph.search_into(&mut scratch, q, 10, ef, Some(&odd), &mut out);
            found += out.len();
        }
    }
    let during = allocations() - before;
    assert_eq!(found, queries.len() * 6 * 10);
    assert_eq!(
        during,
        0,
        "{during} allocations in {} searches",
        queries.len() * 6
    );
    // The counter works: a plain search returns a fresh Vec.
    let before = allocations();
    let _ = graph.search(&queries[0], 10, 16, None);
    assert!(allocations() > before);
}
