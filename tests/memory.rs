//! The memory budget against a real server process: writes past `[memory] limit_bytes` are
//! refused by the accountant with RESOURCE_EXHAUSTED while searches keep working, writes are
//! accepted again once the rebuild has folded the mutable layer into a generation, the process's
//! peak RSS stays near the budget, and the memory gauges are exported.

mod common;

use common::*;
use mmsearch::pb;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tonic::Code;

const DIM: usize = 384;
const LIMIT: u64 = 128 << 20;

fn config() -> String {
    config_with_space(
        DIM,
        &format!(
            "[store]\nblock_cache_bytes = 8388608\nwrite_buffer_bytes = 4194304\nmemtable_budget_bytes = 16777216\n\
             [memory]\nlimit_bytes = {LIMIT}\n"
        ),
    )
}

fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .expect("field");
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
        .expect("kB")
        * 1024
}

fn gauge(metrics_addr: &str, kind: &str) -> u64 {
    let mut s = std::net::TcpStream::connect(metrics_addr).expect("connect metrics port");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {metrics_addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let prefix = format!("mmsearch_memory_bytes{{kind=\"{kind}\"}} ");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no gauge {kind} in /metrics")) as u64
}

async fn try_upsert(
    server: &Server,
    items: Vec<pb::Item>,
) -> Result<pb::UpsertSummary, tonic::Status> {
    let reqs: Vec<pb::UpsertRequest> = items
        .into_iter()
        .map(|i| pb::UpsertRequest { item: Some(i) })
        .collect();
    server
        .ingest()
        .await
        .upsert(tokio_stream::iter(reqs))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_the_budget_are_refused_then_accepted_after_the_rebuild() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("mmsearch.toml");
    std::fs::write(&config_path, config()).expect("write config");
    let mut server = Server::start_with(
        &dir.path().join("data"),
        &config_path,
        &["--no-models", "--metrics-listen", "127.0.0.1:0"],
    );
    let metrics = server.metrics_addr.clone().expect("metrics port");
    let pid = server.child.id();
    let mut gen = Clustered::new(DIM, 32, 7);
    let probe = gen.sample(3, 0.08);

    // Fill until the accountant says no.
    let mut written = 0usize;
    let refusal = loop {
        let batch: Vec<pb::Item> = (0..100)
            .map(|i| {
                item(
                    &format!("i{}", written + i),
                    "t",
                    "c",
                    1.0,
                    gen.sample(written + i, 0.08),
                )
            })
            .collect();
        match try_upsert(&server, batch).await {
            Ok(s) => {
                assert_eq!(s.rejected.len(), 0, "{:?}", s.rejected.first());
                written += 100;
            }
            Err(status) => break status,
        }
        assert!(
            written < 200_000,
            "no refusal after {written} items: the budget is not enforced"
        );
    };
    assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");
    assert!(
        refusal.message().contains("memory budget"),
        "refused by something else: {}",
        refusal.message()
    );
    assert!(
        written >= 500,
        "refused after only {written} items: the baseline leaves no room"
    );
    assert!(gauge(&metrics, "mutable_layers") > 0);
    assert!(gauge(&metrics, "catalogue") > 0);
    assert!(gauge(&metrics, "accounted") > 0);
    assert_eq!(gauge(&metrics, "limit"), LIMIT);

    // Searches keep working while writes are refused.
    let hits = server
        .search()
        .await
        .search(vector_query(probe.clone(), 5))
        .await
        .expect("search while over budget");
    assert_eq!(hits.into_inner().hits.len(), 5);

    // The refusal started a rebuild; once it has swapped, the mutable layer is empty and writes
    // are admitted again.
    let deadline = Instant::now() + Duration::from_secs(300);
    let accepted = loop {
        let batch = vec![item("after", "t", "c", 1.0, probe.clone())];
        match try_upsert(&server, batch).await {
            Ok(_) => break true,
            Err(s) if s.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err(s) => panic!("writes not accepted again: {s:?}"),
        }
    };
    assert!(accepted);
    let hits = server
        .search()
        .await
        .search(vector_query(probe, 1))
        .await
        .expect("search")
        .into_inner();
    assert_eq!(ids(&hits), vec!["after".to_string()]);

    let hwm = proc_status(pid, "VmHWM");
    eprintln!(
        "wrote {written} items before the refusal; VmHWM {} MiB, limit {} MiB",
        hwm >> 20,
        LIMIT >> 20
    );
    assert!(
        hwm as f64 <= 1.1 * LIMIT as f64,
        "VmHWM {} MiB > 1.1 × the {} MiB budget",
        hwm >> 20,
        LIMIT >> 20
    );
    server.terminate();
}

#[tokio::test]
async fn rocksdb_caches_larger_than_half_the_budget_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = config_with_space(
        DIM,
        "[memory]\nlimit_bytes = 100000000\n[store]\nblock_cache_bytes = 67108864\n",
    );
    let config = dir.path().join("c.toml");
    std::fs::write(&config, toml).expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mmsearch"))
        .args([
            "serve",
            "--no-models",
            "--insecure-no-auth",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exceed half of the memory limit"), "{err}");
}
