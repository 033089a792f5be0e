//! Snapshot → restore (issue #4): a server restored from a snapshot answers exactly as the
//! original did — base generation, mutable layer, replacements and deletes included — and the
//! snapshot and restore refuse the targets they must refuse.

mod common;

use common::*;
use mmsearch::pb;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use tonic::Code;

const DIM: usize = 64;
const N: usize = 3_000;
const CATEGORIES: [&str; 6] = ["audio", "bags", "books", "cameras", "garden", "toys"];
const COLOURS: [&str; 4] = ["red", "green", "blue", "black"];

fn catalogue_item(id: &str, i: usize, v: Vec<f32>) -> pb::Item {
    let mut it = item(id, &format!("Product {i}"), CATEGORIES[i % CATEGORIES.len()], ((i * 37) % 500) as f64 + 0.5, v);
    it.attributes.insert("colour".into(), COLOURS[(i / 7) % COLOURS.len()].into());
    it
}

/// A fixed set of queries covering every search path: HNSW over base + mutable layer,
/// filtered traversal, the exact path for selective filters, item ("more like this") queries,
/// paging and attribute filters.
fn queries(gen: &mut Clustered, item_ids: &[String]) -> Vec<pb::SearchRequest> {
    let mut out = Vec::new();
    for i in 0..20 {
        out.push(vector_query(gen.sample(i * 7, 0.1), 10));
    }
    for i in 0..10 {
        let mut q = vector_query(gen.sample(i * 11, 0.1), 10);
        q.filter = Some(pb::Filter {
            categories: vec![CATEGORIES[i % CATEGORIES.len()].into(), CATEGORIES[(i + 1) % CATEGORIES.len()].into()],
            price_min: Some(50.0),
            price_max: Some(400.0),
            ..Default::default()
        });
        out.push(q);
    }
    for i in 0..5 {
        let mut q = vector_query(gen.sample(i * 3, 0.1), 10);
        q.filter = Some(pb::Filter { categories: vec!["books".into()], price_min: Some(10.0), price_max: Some(30.0), ..Default::default() });
        out.push(q);
    }
    for id in item_ids {
        out.push(pb::SearchRequest { query: Some(pb::search_request::Query::ItemId(id.clone())), top_k: 10, ..Default::default() });
    }
    let mut paged = vector_query(gen.sample(5, 0.1), 5);
    paged.offset = 5;
    out.push(paged);
    let mut attr = vector_query(gen.sample(9, 0.1), 10);
    attr.filter = Some(pb::Filter { attributes: [("colour".to_string(), "blue".to_string())].into(), ..Default::default() });
    out.push(attr);
    out
}

#[derive(Debug, PartialEq)]
struct Answers {
    searches: Vec<(Vec<(String, f32)>, bool)>,
    gets: Vec<Result<pb::Item, Code>>,
    status: (u64, u64, u64, Vec<(u64, u64, u64)>),
}

async fn answers(server: &Server, queries: &[pb::SearchRequest], get_ids: &[String]) -> Answers {
    let mut search = server.search().await;
    let mut searches = Vec::new();
    for q in queries {
        let r = search.search(q.clone()).await.expect("search").into_inner();
        searches.push((r.hits.iter().map(|h| (h.id.clone(), h.score)).collect(), r.exact));
    }
    let mut ingest = server.ingest().await;
    let mut gets = Vec::new();
    for id in get_ids {
        gets.push(ingest.get(pb::GetRequest { id: id.clone() }).await.map(|r| r.into_inner()).map_err(|s| s.code()));
    }
    let s = server.admin().await.status(pb::StatusRequest {}).await.expect("status").into_inner();
    let spaces = s.spaces.iter().map(|sp| (sp.base_vectors, sp.fresh_vectors, sp.tombstones)).collect();
    Answers { searches, gets, status: (s.items, s.generation, s.last_version, spaces) }
}

fn restore(snapshot: &Path, data_dir: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mmsearch"))
        .arg("restore")
        .arg(snapshot)
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .output()
        .expect("run mmsearch restore");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

async fn snapshot_err(server: &Server, dir: &str) -> tonic::Status {
    server.admin().await.snapshot(pb::SnapshotRequest { directory: dir.into() }).await.expect_err("snapshot must fail")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_restore_answers_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &config_with_space(DIM, ""));

    // A base generation of N items ...
    let mut gen = Clustered::new(DIM, 40, 11);
    let base: Vec<pb::Item> = (0..N).map(|i| catalogue_item(&format!("item-{i:05}"), i, gen.sample(i, 0.08))).collect();
    assert_eq!(upsert(&server, base).await.accepted as usize, N);
    assert_eq!(rebuild(&server).await.last().map(|p| p.phase.clone()).as_deref(), Some("done"));
    // ... then a mutable layer: new items, replacements of base items (tombstones), and deletes
    // of both base and fresh items.
    let fresh: Vec<pb::Item> = (N..N + 400).map(|i| catalogue_item(&format!("item-{i:05}"), i, gen.sample(i, 0.08))).collect();
    assert_eq!(upsert(&server, fresh).await.accepted, 400);
    let replaced: Vec<pb::Item> = (0..100).map(|j| catalogue_item(&format!("item-{:05}", j * 17), j + 7, gen.sample(j + 3, 0.08))).collect();
    assert_eq!(upsert(&server, replaced).await.accepted, 100);
    let deleted: Vec<String> = (0..150).map(|j| format!("item-{:05}", j * 19 + 1)).chain((0..30).map(|j| format!("item-{:05}", N + j * 13))).collect();
    let d = server.ingest().await.delete(pb::DeleteRequest { ids: deleted.clone() }).await.unwrap().into_inner();
    assert_eq!(d.deleted, 180, "not found: {:?}", d.not_found);

    let live_probe: Vec<String> = ["item-00000", "item-00017", "item-00500", "item-03005", "item-03399"].map(String::from).to_vec();
    let queries = queries(&mut gen, &live_probe);
    let mut get_ids: Vec<String> = (0..N + 400).step_by(37).map(|i| format!("item-{i:05}")).collect();
    get_ids.extend(deleted.iter().take(10).cloned());
    get_ids.extend(live_probe.iter().cloned());
    let before = answers(&server, &queries, &get_ids).await;
    let (items, generation, last_version, spaces) = &before.status;
    assert_eq!((*items, *generation), (N as u64 + 400 - 180, 1));
    assert!(spaces[0].1 > 0 && spaces[0].2 > 0, "want both a mutable layer and tombstones: {spaces:?}");
    assert!(before.searches.iter().any(|(_, exact)| *exact), "the selective filters take the exact path");
    assert!(before.gets.iter().any(|g| g.is_err()), "deleted ids answer NOT_FOUND");

    // Refused targets.
    assert_eq!(snapshot_err(&server, "relative/snap").await.code(), Code::InvalidArgument);
    assert_eq!(snapshot_err(&server, data.join("snap").to_str().unwrap()).await.code(), Code::InvalidArgument);
    let occupied_target = tmp.path().join("occupied-target");
    std::fs::create_dir(&occupied_target).unwrap();
    std::fs::write(occupied_target.join("keep"), b"x").unwrap();
    assert_eq!(snapshot_err(&server, occupied_target.to_str().unwrap()).await.code(), Code::AlreadyExists);
    let a_file = tmp.path().join("a-file");
    std::fs::write(&a_file, b"x").unwrap();
    let e = snapshot_err(&server, a_file.join("snap").to_str().unwrap()).await;
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // The snapshot (its parent folder does not exist yet).
    let snap = tmp.path().join("snapshots/s1");
    let started = Instant::now();
    let s = server.admin().await.snapshot(pb::SnapshotRequest { directory: snap.to_string_lossy().into() }).await.unwrap().into_inner();
    println!(
        "snapshot: {} files, {} bytes ({} hard-linked) in {:.3}s server-side, {:.3}s round trip",
        s.files,
        s.bytes,
        s.linked_bytes,
        s.seconds,
        started.elapsed().as_secs_f64()
    );
    assert_eq!((s.generation, s.generation_version, s.last_version), (1, N as u64, *last_version));
    assert!(s.model_ids.is_empty());
    assert!(s.bytes > (N * DIM * 4) as u64 && s.files > 3);
    assert!(snap.join("SNAPSHOT.json").is_file());
    assert!(!tmp.path().join("snapshots/s1.tmp").exists(), "the .tmp folder is renamed away");
    assert_eq!(snapshot_err(&server, snap.to_str().unwrap()).await.code(), Code::AlreadyExists);
    // An empty existing directory is a fine target.
    let empty_target = tmp.path().join("empty-target");
    std::fs::create_dir(&empty_target).unwrap();
    server.admin().await.snapshot(pb::SnapshotRequest { directory: empty_target.to_string_lossy().into() }).await.unwrap();

    // Restoring over the data directory of a running server is refused even with --force.
    let (ok, text) = restore(&snap, &data, &["--force"]);
    assert!(!ok && text.contains("in use"), "{text}");
    server.terminate();

    // Restore refusals: a non-empty data dir without --force, a corrupt snapshot.
    let occupied = tmp.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("notes.txt"), b"mine").unwrap();
    let (ok, text) = restore(&snap, &occupied, &[]);
    assert!(!ok && text.contains("not empty"), "{text}");
    assert!(!occupied.join("store").exists());
    let corrupt = tmp.path().join("corrupt");
    copy_tree(&snap, &corrupt);
    let vec_file: PathBuf = std::fs::read_dir(corrupt.join("index")).unwrap().next().unwrap().unwrap().path().join("shared.vec");
    let mut bytes = std::fs::read(&vec_file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&vec_file, bytes).unwrap();
    let fresh_dir = tmp.path().join("never");
    let (ok, text) = restore(&corrupt, &fresh_dir, &[]);
    assert!(!ok && text.contains("shared.vec"), "{text}");
    assert!(!fresh_dir.join("store").exists());

    // Restores that work: into a new directory, and with --force over a non-empty one.
    let restored = tmp.path().join("restored");
    let started = Instant::now();
    let (ok, text) = restore(&snap, &restored, &["--config", server.config.to_str().unwrap()]);
    assert!(ok, "{text}");
    println!("restore: {:.3}s ({})", started.elapsed().as_secs_f64(), text.lines().next().unwrap_or(""));
    let (ok, text) = restore(&empty_target, &occupied, &["--force"]);
    assert!(ok, "{text}");
    assert_eq!(std::fs::read(occupied.join("notes.txt")).unwrap(), b"mine", "files restore does not own are left alone");

    for dir in [&restored, &occupied] {
        let server = Server::start_with(dir, &server.config.clone(), &["--no-models"]);
        let after = answers(&server, &queries, &get_ids).await;
        assert_eq!(after.status, before.status, "status of the server restored in {}", dir.display());
        for (i, (a, b)) in after.searches.iter().zip(&before.searches).enumerate() {
            assert_eq!(a, b, "query {i} answers differently after restore into {}", dir.display());
        }
        assert_eq!(after.gets, before.gets);
    }
}
