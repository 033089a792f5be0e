//! Acceptance tests of the core engine against a real server process, RocksDB in a temp dir
//! and real gRPC clients (issue: core engine).

mod common;

use common::*;
use mmsearch::pb;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const DIM: usize = 128;
const N: usize = 20_000;
const CATEGORIES: [&str; 10] = [
    "audio", "bags", "books", "cameras", "garden", "kitchen", "shoes", "sports", "toys", "watches",
];

fn brute_force(
    items: &[(String, Vec<f32>)],
    q: &[f32],
    k: usize,
    accept: impl Fn(usize) -> bool,
) -> Vec<String> {
    let mut scored: Vec<(f32, usize)> = items
        .iter()
        .enumerate()
        .filter(|(i, _)| accept(*i))
        .map(|(i, (_, v))| (dot(q, v), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored
        .into_iter()
        .take(k)
        .map(|(_, i)| items[i].0.clone())
        .collect()
}

fn recall(got: &[String], want: &[String]) -> f64 {
    let want: HashSet<&String> = want.iter().collect();
    got.iter().filter(|g| want.contains(g)).count() as f64 / want.len().max(1) as f64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// 20k clustered vectors: streaming ingest, recall@10 against brute force before and after a
/// rebuild that runs under 4 continuously searching clients, filters, restart, and a crash in
/// the middle of a later rebuild.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_thousand_items_recall_rebuild_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &config_with_space(DIM, ""));

    let mut gen = Clustered::new(DIM, 200, 7);
    let items: Vec<(String, Vec<f32>)> = (0..N)
        .map(|i| (format!("item-{i:05}"), gen.sample(i % 200, 0.08)))
        .collect();
    let category_of = |i: usize| CATEGORIES[(i * 7 + i / 13) % CATEGORIES.len()];
    let price_of = |i: usize| ((i * 37) % 1000) as f64 + 0.99;

    // One streaming Upsert of all 20k items.
    let started = Instant::now();
    let stream: Vec<pb::Item> = items
        .iter()
        .enumerate()
        .map(|(i, (id, v))| {
            item(
                id,
                &format!("Product {i}"),
                category_of(i),
                price_of(i),
                v.clone(),
            )
        })
        .collect();
    let summary = upsert(&server, stream).await;
    let ingest_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        summary.accepted as usize,
        N,
        "rejected: {:?}",
        summary.rejected.first()
    );
    println!(
        "ingest: {N} items in {ingest_secs:.2}s = {:.0} items/s",
        N as f64 / ingest_secs
    );

    let queries: Vec<Vec<f32>> = (0..200).map(|i| gen.sample(i * 13 % 200, 0.1)).collect();
    let truth: Vec<Vec<String>> = queries
        .iter()
        .map(|q| brute_force(&items, q, 10, |_| true))
        .collect();
    let mut client = server.search().await;

    // Fresh (mutable-layer) answers are exact.
    let mut fresh_recall = 0.0;
    for (q, t) in queries.iter().zip(&truth) {
        let r = client
            .search(vector_query(q.clone(), 10))
            .await
            .unwrap()
            .into_inner();
        fresh_recall += recall(&ids(&r), t);
    }
    fresh_recall /= queries.len() as f64;
    assert!(fresh_recall > 0.999, "mutable-layer recall {fresh_recall}");

    // Rebuild while 4 clients search continuously.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut searchers = Vec::new();
    for c in 0..4 {
        let mut client = server.search().await;
        let qs = queries.clone();
        let stop = stop.clone();
        searchers.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut i) = (0u64, 0u64, c);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client
                    .search(vector_query(qs[i % qs.len()].clone(), 10))
                    .await
                {
                    Ok(r) if r.get_ref().hits.len() == 10 => ok += 1,
                    _ => failed += 1,
                }
                i += 4;
            }
            (ok, failed)
        }));
    }
    let started = Instant::now();
    let progress = rebuild(&server).await;
    let rebuild_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for s in searchers {
        let (o, f) = s.await.unwrap();
        ok += o;
        failed += f;
    }
    println!("rebuild: {rebuild_secs:.2}s for {N} items; {ok} searches during it, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 0);
    assert_eq!(progress.last().map(|p| p.phase.as_str()), Some("done"));
    assert!(progress
        .iter()
        .any(|p| p.phase == "building" && p.total == N as u64));

    let status = server
        .admin()
        .await
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.generation, 1);
    assert_eq!(status.items, N as u64);
    assert_eq!(status.spaces[0].base_vectors, N as u64);
    assert_eq!(status.spaces[0].fresh_vectors, 0);

    // HNSW answers: recall@10 against brute force, and latency.
    let mut hnsw_recall = 0.0;
    let mut before_restart = Vec::new();
    let mut latencies = Vec::new();
    for (q, t) in queries.iter().zip(&truth) {
        let t0 = Instant::now();
        let r = client
            .search(vector_query(q.clone(), 10))
            .await
            .unwrap()
            .into_inner();
        latencies.push(t0.elapsed().as_secs_f64() * 1e3);
        hnsw_recall += recall(&ids(&r), t);
        before_restart.push(ids(&r));
    }
    hnsw_recall /= queries.len() as f64;
    latencies.sort_by(f64::total_cmp);
    println!(
        "search top_k=10 over gRPC: recall@10 {hnsw_recall:.4}, p50 {:.2} ms, p99 {:.2} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    assert!(hnsw_recall >= 0.95, "HNSW recall@10 {hnsw_recall}");

    // Filters run inside the traversal and still fill top_k.
    for (qi, q) in queries.iter().take(30).enumerate() {
        let cat = CATEGORIES[qi % CATEGORIES.len()];
        let (lo, hi) = (100.0, 400.0);
        let mut req = vector_query(q.clone(), 10);
        req.filter = Some(pb::Filter {
            categories: vec![cat.into()],
            price_min: Some(lo),
            price_max: Some(hi),
            ..Default::default()
        });
        let r = client.search(req).await.unwrap().into_inner();
        assert_eq!(r.hits.len(), 10, "filtered query must fill top_k");
        for h in &r.hits {
            let it = h.item.as_ref().unwrap();
            assert_eq!(it.category, cat);
            assert!(
                it.price >= lo && it.price <= hi,
                "price {} outside [{lo}, {hi}]",
                it.price
            );
        }
        let want = brute_force(&items, q, 10, |i| {
            category_of(i) == cat && (lo..=hi).contains(&price_of(i))
        });
        assert!(recall(&ids(&r), &want) >= 0.8, "filtered recall too low");
    }
    // A very selective filter (a handful of items) takes the exact path and returns them all.
    let mut req = vector_query(queries[0].clone(), 10);
    req.filter = Some(pb::Filter {
        categories: vec!["audio".into()],
        price_min: Some(10.0),
        price_max: Some(12.0),
        ..Default::default()
    });
    let r = client.search(req).await.unwrap().into_inner();
    let want = brute_force(&items, &queries[0], 10, |i| {
        category_of(i) == "audio" && (10.0..=12.0).contains(&price_of(i))
    });
    assert!(r.exact);
    assert_eq!(ids(&r), want);

    // Restart: same answers.
    server.terminate();
    let mut server = Server::start_with(&data, &server.config.clone(), &["--no-models"]);
    let mut client = server.search().await;
    for (q, before) in queries.iter().zip(&before_restart) {
        let r = client
            .search(vector_query(q.clone(), 10))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&ids(&r), before, "answers changed across a restart");
    }

    // Crash in the middle of a rebuild: the old generation stays in use, nothing half-written loads.
    let extra = item("late-item", "Late", "toys", 1.0, queries[0].clone());
    upsert(&server, vec![extra]).await;
    let mut admin = server.admin().await;
    let mut stream = admin
        .rebuild(pb::RebuildRequest {})
        .await
        .unwrap()
        .into_inner();
    loop {
        let p = stream.message().await.unwrap().expect("progress");
        if p.phase == "building" && p.done > 0 {
            break;
        }
    }
    server.kill9();
    let leftovers: Vec<String> = std::fs::read_dir(data.join("index"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        leftovers.iter().any(|n| n.contains(".tmp")),
        "expected a half-written generation, found {leftovers:?}"
    );
    let server = Server::start_with(&data, &server.config.clone(), &["--no-models"]);
    let status = server
        .admin()
        .await
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.generation, 1,
        "the interrupted generation must not load"
    );
    assert_eq!(status.items, N as u64 + 1);
    let leftovers: Vec<String> = std::fs::read_dir(data.join("index"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !leftovers.iter().any(|n| n.contains(".tmp")),
        "half-written generation not cleaned: {leftovers:?}"
    );
    let mut client = server.search().await;
    let r = client
        .search(vector_query(queries[0].clone(), 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ids(&r),
        vec!["late-item".to_string()],
        "the write after the generation is replayed"
    );
    for (q, before) in queries.iter().zip(&before_restart).skip(1).take(20) {
        let r = client
            .search(vector_query(q.clone(), 10))
            .await
            .unwrap()
            .into_inner();
        let got = ids(&r);
        let overlap = got
            .iter()
            .filter(|g| before.contains(g) || *g == "late-item")
            .count();
        assert!(
            overlap >= 9,
            "answers drifted after crash recovery: {got:?} vs {before:?}"
        );
    }
}
