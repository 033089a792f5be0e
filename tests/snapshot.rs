//! Snapshot → restore (issue #4): a server restored from a snapshot answers exactly as the
//! original did — base generation, mutable layer, replacements and deletes included — and the
//! snapshot and restore refuse the targets they must refuse. Snapshots go only under the
//! server's configured snapshot directory; clients name them (issue #9).

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
    let mut it = item(
        id,
        &format!("Product {i}"),
        CATEGORIES[i % CATEGORIES.len()],
        ((i * 37) % 500) as f64 + 0.5,
        v,
    );
    it.attributes
        .insert("colour".into(), COLOURS[(i / 7) % COLOURS.len()].into());
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
            categories: vec![
                CATEGORIES[i % CATEGORIES.len()].into(),
                CATEGORIES[(i + 1) % CATEGORIES.len()].into(),
            ],
            price_min: Some(50.0),
            price_max: Some(400.0),
            ..Default::default()
        });
        out.push(q);
    }
    for i in 0..5 {
        let mut q = vector_query(gen.sample(i * 3, 0.1), 10);
        q.filter = Some(pb::Filter {
            categories: vec!["books".into()],
            price_min: Some(10.0),
            price_max: Some(30.0),
            ..Default::default()
        });
        out.push(q);
    }
    for id in item_ids {
        out.push(pb::SearchRequest {
            query: Some(pb::search_request::Query::ItemId(id.clone())),
            top_k: 10,
            ..Default::default()
        });
    }
    let mut paged = vector_query(gen.sample(5, 0.1), 5);
    paged.offset = 5;
    out.push(paged);
    let mut attr = vector_query(gen.sample(9, 0.1), 10);
    attr.filter = Some(pb::Filter {
        attributes: [("colour".to_string(), "blue".to_string())].into(),
        ..Default::default()
    });
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
        searches.push((
            r.hits.iter().map(|h| (h.id.clone(), h.score)).collect(),
            r.exact,
        ));
    }
    let mut ingest = server.ingest().await;
    let mut gets = Vec::new();
    for id in get_ids {
        gets.push(
            ingest
                .get(pb::GetRequest { id: id.clone() })
                .await
                .map(|r| r.into_inner())
                .map_err(|s| s.code()),
        );
    }
    let s = server
        .admin()
        .await
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    let spaces = s
        .spaces
        .iter()
        .map(|sp| (sp.base_vectors, sp.fresh_vectors, sp.tombstones))
        .collect();
    Answers {
        searches,
        gets,
        status: (s.items, s.generation, s.last_version, spaces),
    }
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
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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

async fn snapshot(server: &Server, name: &str) -> Result<pb::SnapshotResponse, tonic::Status> {
    server
        .admin()
        .await
        .snapshot(pb::SnapshotRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

async fn snapshot_err(server: &Server, name: &str) -> tonic::Status {
    snapshot(server, name)
        .await
        .expect_err("snapshot must fail")
}

/// `snapshot_dir = "<dir>"` ahead of the test config (a top-level key must precede the tables).
fn config_with_snapshot_dir(dir: &Path) -> String {
    format!(
        "snapshot_dir = {:?}\n{}",
        dir.to_str().unwrap(),
        config_with_space(DIM, "")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_restore_answers_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let snapshots = tmp.path().join("backups/snapshots");
    let mut server = Server::start(&data, &config_with_snapshot_dir(&snapshots));

    // A base generation of N items ...
    let mut gen = Clustered::new(DIM, 40, 11);
    let base: Vec<pb::Item> = (0..N)
        .map(|i| catalogue_item(&format!("item-{i:05}"), i, gen.sample(i, 0.08)))
        .collect();
    assert_eq!(upsert(&server, base).await.accepted as usize, N);
    assert_eq!(
        rebuild(&server)
            .await
            .last()
            .map(|p| p.phase.clone())
            .as_deref(),
        Some("done")
    );
    // ... then a mutable layer: new items, replacements of base items (tombstones), and deletes
    // of both base and fresh items.
    let fresh: Vec<pb::Item> = (N..N + 400)
        .map(|i| catalogue_item(&format!("item-{i:05}"), i, gen.sample(i, 0.08)))
        .collect();
    assert_eq!(upsert(&server, fresh).await.accepted, 400);
    let replaced: Vec<pb::Item> = (0..100)
        .map(|j| {
            catalogue_item(
                &format!("item-{:05}", j * 17),
                j + 7,
                gen.sample(j + 3, 0.08),
            )
        })
        .collect();
    assert_eq!(upsert(&server, replaced).await.accepted, 100);
    let deleted: Vec<String> = (0..150)
        .map(|j| format!("item-{:05}", j * 19 + 1))
        .chain((0..30).map(|j| format!("item-{:05}", N + j * 13)))
        .collect();
    let d = server
        .ingest()
        .await
        .delete(pb::DeleteRequest {
            ids: deleted.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.deleted, 180, "not found: {:?}", d.not_found);

    let live_probe: Vec<String> = [
        "item-00000",
        "item-00017",
        "item-00500",
        "item-03005",
        "item-03399",
    ]
    .map(String::from)
    .to_vec();
    let queries = queries(&mut gen, &live_probe);
    let mut get_ids: Vec<String> = (0..N + 400)
        .step_by(37)
        .map(|i| format!("item-{i:05}"))
        .collect();
    get_ids.extend(deleted.iter().take(10).cloned());
    get_ids.extend(live_probe.iter().cloned());
    let before = answers(&server, &queries, &get_ids).await;
    let (items, generation, last_version, spaces) = &before.status;
    assert_eq!((*items, *generation), (N as u64 + 400 - 180, 1));
    assert!(
        spaces[0].1 > 0 && spaces[0].2 > 0,
        "want both a mutable layer and tombstones: {spaces:?}"
    );
    assert!(
        before.searches.iter().any(|(_, exact)| *exact),
        "the selective filters take the exact path"
    );
    assert!(
        before.gets.iter().any(|g| g.is_err()),
        "deleted ids answer NOT_FOUND"
    );

    // Refused requests: a server path (the old API), and names that are not one plain folder
    // name. None of them creates anything.
    let wanted = tmp.path().join("wanted-by-client");
    for req in [
        pb::SnapshotRequest {
            directory: wanted.to_string_lossy().into(),
            ..Default::default()
        },
        pb::SnapshotRequest {
            directory: wanted.to_string_lossy().into(),
            name: "s0".into(),
        },
        pb::SnapshotRequest {
            directory: "relative/snap".into(),
            ..Default::default()
        },
    ] {
        let e = server
            .admin()
            .await
            .snapshot(req.clone())
            .await
            .expect_err("a server path is refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{req:?}: {e:?}");
        assert!(
            e.message()
                .contains("server paths are not accepted; name the snapshot"),
            "{e:?}"
        );
    }
    assert!(!wanted.exists() && !snapshots.join("s0").exists());
    for name in [
        "a/b",
        "../escape",
        "..",
        "x/../../escape",
        ".hidden",
        "/abs",
        "sp ace",
        "n".repeat(129).as_str(),
    ] {
        let e = snapshot_err(&server, name).await;
        assert_eq!(e.code(), Code::InvalidArgument, "{name:?}: {e:?}");
    }
    assert!(
        !tmp.path().join("backups/escape").exists()
            && !tmp.path().join("escape").exists()
            && !snapshots.exists()
    );
    // A name that is taken by something else in the snapshot directory.
    std::fs::create_dir_all(snapshots.join("occupied")).unwrap();
    std::fs::write(snapshots.join("occupied/keep"), b"x").unwrap();
    assert_eq!(
        snapshot_err(&server, "occupied").await.code(),
        Code::AlreadyExists
    );

    // The snapshot.
    let started = Instant::now();
    let s = snapshot(&server, "s1").await.unwrap();
    println!(
        "snapshot: {} files, {} bytes ({} hard-linked) in {:.3}s server-side, {:.3}s round trip",
        s.files,
        s.bytes,
        s.linked_bytes,
        s.seconds,
        started.elapsed().as_secs_f64()
    );
    let snap = snapshots.join("s1");
    assert_eq!(
        (s.name.as_str(), Path::new(&s.directory)),
        ("s1", snap.as_path())
    );
    assert_eq!(
        (s.generation, s.generation_version, s.last_version),
        (1, N as u64, *last_version)
    );
    assert!(s.model_ids.is_empty());
    assert!(s.bytes > (N * DIM * 4) as u64 && s.files > 3);
    assert!(snap.join("SNAPSHOT.json").is_file());
    assert!(
        !snapshots.join(".s1.tmp").exists(),
        "the staging folder is renamed away"
    );
    // An existing name.
    assert_eq!(
        snapshot_err(&server, "s1").await.code(),
        Code::AlreadyExists
    );
    // An empty existing directory is a fine target.
    let empty_target = snapshots.join("empty-target");
    std::fs::create_dir(&empty_target).unwrap();
    snapshot(&server, "empty-target").await.unwrap();
    // Without a name the server picks one from the time and the version it covers.
    let g = snapshot(&server, "").await.unwrap();
    let suffix = format!("-v{last_version}");
    let stamp = g
        .name
        .strip_prefix("snapshot-")
        .and_then(|n| n.strip_suffix(suffix.as_str()))
        .unwrap_or_else(|| panic!("{g:?}"));
    assert!(
        stamp.len() == 16 && stamp.as_bytes()[8] == b'T' && stamp.ends_with('Z'),
        "{g:?}"
    );
    assert_eq!(Path::new(&g.directory), snapshots.join(&g.name));
    assert!(snapshots.join(&g.name).join("SNAPSHOT.json").is_file());

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
    let vec_file: PathBuf = std::fs::read_dir(corrupt.join("index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("shared.graph");
    let mut bytes = std::fs::read(&vec_file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&vec_file, bytes).unwrap();
    let fresh_dir = tmp.path().join("never");
    let (ok, text) = restore(&corrupt, &fresh_dir, &[]);
    assert!(!ok && text.contains("shared.graph"), "{text}");
    assert!(!fresh_dir.join("store").exists());

    // Restores that work: into a new directory, and with --force over a non-empty one.
    let restored = tmp.path().join("restored");
    let started = Instant::now();
    let (ok, text) = restore(
        &snap,
        &restored,
        &["--config", server.config.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    println!(
        "restore: {:.3}s ({})",
        started.elapsed().as_secs_f64(),
        text.lines().next().unwrap_or("")
    );
    let (ok, text) = restore(&empty_target, &occupied, &["--force"]);
    assert!(ok, "{text}");
    assert_eq!(
        std::fs::read(occupied.join("notes.txt")).unwrap(),
        b"mine",
        "files restore does not own are left alone"
    );

    for dir in [&restored, &occupied] {
        let server = Server::start_with(dir, &server.config.clone(), &["--no-models"]);
        let after = answers(&server, &queries, &get_ids).await;
        assert_eq!(
            after.status,
            before.status,
            "status of the server restored in {}",
            dir.display()
        );
        for (i, (a, b)) in after.searches.iter().zip(&before.searches).enumerate() {
            assert_eq!(
                a,
                b,
                "query {i} answers differently after restore into {}",
                dir.display()
            );
        }
        assert_eq!(after.gets, before.gets);
    }
}

/// Runs `mmsearch serve` with `args`, which must make it refuse to start; returns its output.
fn serve_refused(args: &[&std::ffi::OsStr]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mmsearch"))
        .args([
            "serve",
            "--no-models",
            "--insecure-no-auth",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn mmsearch serve");
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started with {args:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("server output");
    assert!(!out.status.success(), "{args:?}");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Without `snapshot_dir` snapshots go to `snapshots` beside the data directory; one inside the
/// data directory is refused at startup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_dir_defaults_beside_data_and_must_be_outside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("srv/data");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::start(&data, &config_with_space(DIM, ""));
    let written = upsert(&server, vec![catalogue_item("one", 1, vec![1.0; DIM])]).await;
    assert_eq!(written.accepted, 1);
    let s = snapshot(&server, "first").await.unwrap();
    assert_eq!(
        Path::new(&s.directory),
        tmp.path().join("srv/snapshots/first")
    );
    assert_eq!(
        (s.name.as_str(), s.last_version),
        ("first", written.last_version)
    );
    drop(server);

    let config = tmp.path().join("inside.toml");
    for (snapshot_dir, why) in [
        (data.join("snaps"), "a folder in it"),
        (data.clone(), "the data directory itself"),
    ] {
        std::fs::write(
            &config,
            format!(
                "snapshot_dir = {:?}\n{}",
                snapshot_dir.to_str().unwrap(),
                config_with_space(DIM, "")
            ),
        )
        .unwrap();
        let text = serve_refused(&[
            "--config".as_ref(),
            config.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ]);
        assert!(text.contains("inside data_dir"), "{why}: {text}");
    }
    // The flag sets it the same way.
    let via_index = data.join("index/../snaps");
    let text = serve_refused(&[
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--snapshot-dir".as_ref(),
        via_index.as_os_str(),
    ]);
    assert!(text.contains("inside data_dir"), "{text}");
}
