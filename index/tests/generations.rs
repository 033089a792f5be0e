//! Generations on disk: build → commit → reload (mmapped) gives the same answers; incomplete
//! and corrupt generations are never loaded.

mod common;

use mmsearch_index::generation::{self, Generation, GenerationWriter};
use mmsearch_index::{HnswParams, Metric, SpaceSpec};

fn rows(n: usize, dim: usize, seed: u64) -> Vec<(u64, Vec<f32>)> {
    common::random_rows(n, dim, seed, |i| i as u64 * 3 + 1)
}

fn spec() -> SpaceSpec {
    SpaceSpec {
        name: "shared".into(),
        dim: 16,
        metric: Metric::Cosine,
    }
}

fn write(root: &std::path::Path, id: u64, data: &[(u64, Vec<f32>)]) -> std::path::PathBuf {
    let mut w = GenerationWriter::create(root, id, 1000 + id).unwrap();
    let refs: Vec<(u64, &[f32])> = data.iter().map(|(i, v)| (*i, v.as_slice())).collect();
    w.add_space(&spec(), &HnswParams::default(), &refs, 10, &mut |_| {})
        .unwrap();
    w.commit().unwrap()
}

#[test]
fn reload_gives_identical_answers_and_exact_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let data = rows(2_000, 16, 42);
    let path = write(dir.path(), 1, &data);
    let g = Generation::open(&path, &[spec()]).unwrap();
    assert_eq!((g.id, g.snapshot_seq), (1, 1001));
    let seg = g.segment("shared").unwrap();
    assert!(
        seg.flat.is_some() && seg.graph.is_none() && seg.vectors.is_empty(),
        "one copy of the vectors: the graph file"
    );
    assert!(!g.is_legacy());
    assert_eq!(seg.len(), 2_000);
    assert_eq!(seg.get(data[5].0), Some(data[5].1.as_slice()));
    assert_eq!(seg.ids().len(), 2_000);
    let again = Generation::open(&path, &[spec()]).unwrap();
    let mut recall = 0.0;
    for (id, q) in data.iter().step_by(100) {
        let a = seg.search(q, 10, 64, &|_| true);
        let b = again
            .segment("shared")
            .unwrap()
            .search(q, 10, 64, &|_| true);
        assert_eq!(a, b, "two loads of one generation must answer identically");
        assert_eq!(a[0].id, *id, "a stored vector finds itself first");
        let exact = seg.flat.as_ref().unwrap().exact(q, 10, None);
        recall += a
            .iter()
            .filter(|h| exact.iter().any(|e| e.id == h.id))
            .count() as f64
            / 10.0;
        // A filter inside the traversal only returns accepted ids.
        let odd = seg.search(q, 10, 64, &|id| id % 2 == 1);
        assert!(odd.iter().all(|h| h.id % 2 == 1));
    }
    assert!(recall / 20.0 > 0.9, "recall {recall}");
}

#[test]
fn incomplete_and_corrupt_generations_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let data = rows(500, 16, 7);
    write(dir.path(), 1, &data);
    let second = write(dir.path(), 2, &data[..400]);
    // A build that crashed before its rename.
    let crashed = GenerationWriter::create(dir.path(), 3, 2000).unwrap();
    std::mem::forget(crashed);
    assert_eq!(
        generation::list_generations(dir.path()).unwrap(),
        vec![1, 2]
    );
    let (g, skipped) = generation::open_newest(dir.path(), &[spec()]).unwrap();
    assert_eq!(g.unwrap().id, 2);
    assert!(skipped.is_empty());
    assert_eq!(generation::remove_incomplete(dir.path()).unwrap().len(), 1);

    // Flip a byte in generation 2's graph links: opening rejects it.
    assert_eq!(generation::verify(&second).unwrap().generation, 2);
    assert_eq!(
        second.file_name().unwrap().to_string_lossy(),
        generation::dir_name(2)
    );
    let graph = second.join("shared.graph");
    let mut bytes = std::fs::read(&graph).unwrap();
    let in_links = bytes.len() * 3 / 4;
    bytes[in_links] ^= 0x55;
    std::fs::write(&graph, bytes).unwrap();
    let (g, skipped) = generation::open_newest(dir.path(), &[spec()]).unwrap();
    assert_eq!(g.unwrap().id, 1);
    assert_eq!(skipped.len(), 1);
    assert!(
        generation::verify(&second).is_err(),
        "verify checks without loading"
    );

    // A config whose dimension changed cannot use the generation.
    let other = SpaceSpec { dim: 32, ..spec() };
    assert!(Generation::open(&generation::generation_dir(dir.path(), 1), &[other]).is_err());

    // Pruning keeps the newest `keep` and always the one in use.
    assert!(generation::prune(dir.path(), 1, 1).unwrap().is_empty());
    assert_eq!(generation::prune(dir.path(), 1, 2).unwrap(), vec![1]);
    assert_eq!(generation::list_generations(dir.path()).unwrap(), vec![2]);
}

#[test]
fn l2_space_scores_are_negative_distances() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SpaceSpec {
        name: "raw".into(),
        dim: 2,
        metric: Metric::L2,
    };
    let data: Vec<(u64, Vec<f32>)> = (0..300).map(|i| (i as u64, vec![i as f32, 0.0])).collect();
    let refs: Vec<(u64, &[f32])> = data.iter().map(|(i, v)| (*i, v.as_slice())).collect();
    let mut w = GenerationWriter::create(dir.path(), 1, 300).unwrap();
    w.add_space(&spec, &HnswParams::default(), &refs, 10, &mut |_| {})
        .unwrap();
    let g = Generation::open(&w.commit().unwrap(), &[spec]).unwrap();
    let hits = g
        .segment("raw")
        .unwrap()
        .search(&[10.2, 0.0], 3, 32, &|_| true);
    assert_eq!(hits[0].id, 10);
    assert!(
        (hits[0].score + 0.2).abs() < 1e-4,
        "score {}",
        hits[0].score
    );
}

#[test]
fn truncated_graph_file_falls_back_to_the_previous_generation() {
    let dir = tempfile::tempdir().unwrap();
    let data = rows(800, 16, 9);
    write(dir.path(), 1, &data);
    let second = write(dir.path(), 2, &data[..700]);
    let graph = second.join("shared.graph");
    let bytes = std::fs::read(&graph).unwrap();
    std::fs::write(&graph, &bytes[..bytes.len() - 100]).unwrap();
    let (g, skipped) = generation::open_newest(dir.path(), &[spec()]).unwrap();
    assert_eq!((g.unwrap().id, skipped.len()), (1, 1));
    // The same length with a flipped vector byte opens (vectors are checksummed by `verify`,
    // not on open, to keep opening proportional to the links) and `verify` catches it.
    let mut flipped = bytes.clone();
    flipped[6_000] ^= 0x01; // past the ids (128 + 700·8 bytes): a vector row
    std::fs::write(&graph, &flipped).unwrap();
    assert!(Generation::open(&second, &[spec()]).is_ok());
    assert!(generation::verify(&second).is_err());
}

#[test]
fn legacy_hnsw_rs_generations_still_open_and_report_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = rows(600, 16, 13);
    let refs: Vec<(u64, &[f32])> = data.iter().map(|(i, v)| (*i, v.as_slice())).collect();
    let mut w = GenerationWriter::create(dir.path(), 4, 900).unwrap();
    w.add_space_legacy(&spec(), &HnswParams::default(), &refs)
        .unwrap();
    let path = w.commit().unwrap();
    let g = Generation::open(&path, &[spec()]).unwrap();
    assert!(g.is_legacy());
    let seg = g.segment("shared").unwrap();
    assert!(seg.graph.as_ref().unwrap().is_mapped() && seg.flat.is_none());
    assert_eq!(seg.search(&data[3].1, 1, 32, &|_| true)[0].id, data[3].0);
    assert_eq!(
        seg.layer_counts().iter().sum::<usize>(),
        600,
        "hnsw_rs counts each point on its own level"
    );
}
