//! Operations acceptance: API keys and roles, TLS (and client certificates), concurrency
//! limits, graceful SIGTERM, and the metrics/probe port — each against a real server process.

mod common;

use common::*;
use mmsearch::client::{ClientOptions, Connection};
use mmsearch::pb;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::Code;

const DIM: usize = 16;
const SEARCH_KEY: &str = "test-search-key";
const INGEST_KEY: &str = "test-ingest-key";
const ADMIN_KEY: &str = "test-admin-key";

fn keys_toml() -> String {
    let h = mmsearch::server::auth::hash_key;
    format!(
        r#"
[auth]
enabled = true
[[auth.keys]]
name = "frontend"
roles = ["search"]
sha256 = "{}"
[[auth.keys]]
name = "indexer"
roles = ["ingest"]
sha256 = "{}"
[[auth.keys]]
name = "ops"
roles = ["admin"]
sha256 = "{}"
"#,
        h(SEARCH_KEY),
        h(INGEST_KEY),
        h(ADMIN_KEY)
    )
}

fn start_raw(dir: &Path, toml: &str, extra: &[&str]) -> Server {
    let config = dir.with_extension("toml");
    std::fs::write(&config, toml).unwrap();
    let mut args = vec!["--no-models"];
    args.extend_from_slice(extra);
    Server::start_raw(dir, &config, &args)
}

async fn connect(server: &str, key: Option<&str>) -> Connection {
    ClientOptions {
        server: server.into(),
        api_key: key.map(String::from),
        ..Default::default()
    }
    .connect()
    .await
    .expect("connect")
}

fn tls_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls")
}

/// True when the connection or its first call fails (handshake refused, wrong protocol).
async fn is_refused(opts: ClientOptions) -> bool {
    match opts.connect().await {
        Err(_) => true,
        Ok(c) => c.admin().status(pb::StatusRequest {}).await.is_err(),
    }
}

fn tls_server(dir: &Path, extra: &[&str]) -> Server {
    let tls = tls_dir();
    let (cert, key) = (tls.join("server.pem"), tls.join("server.key"));
    let mut args = vec![
        "--insecure-no-auth",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    start_raw(dir, &config_with_space(DIM, ""), &args)
}

fn probe_item(id: &str) -> pb::Item {
    item(
        id,
        "probe",
        "c",
        1.0,
        normalise((0..DIM).map(|i| (i + 1) as f32).collect()),
    )
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect metrics port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test]
async fn each_role_reaches_only_its_services() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_raw(
        &tmp.path().join("d"),
        &config_with_space(DIM, &keys_toml()),
        &["--metrics-listen", "127.0.0.1:0"],
    );

    let search_req = || vector_query(normalise(vec![1.0; DIM]), 3);
    let upsert = |c: &Connection| {
        let mut ingest = c.ingest();
        async move {
            ingest
                .upsert(tokio_stream::iter(vec![pb::UpsertRequest {
                    item: Some(probe_item("p1")),
                }]))
                .await
                .map(|_| ())
        }
    };

    // No key, a malformed header, and an unknown key: UNAUTHENTICATED everywhere.
    let anon = connect(&server.addr, None).await;
    assert_eq!(
        anon.search().search(search_req()).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        upsert(&anon).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        anon.admin()
            .status(pb::StatusRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let wrong = connect(&server.addr, Some("not-a-key")).await;
    assert_eq!(
        wrong
            .search()
            .search(search_req())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    let search = connect(&server.addr, Some(SEARCH_KEY)).await;
    let ingest = connect(&server.addr, Some(INGEST_KEY)).await;
    let admin = connect(&server.addr, Some(ADMIN_KEY)).await;

    // ingest: writes and reads items, nothing else.
    upsert(&ingest).await.expect("ingest key may upsert");
    ingest
        .ingest()
        .get(pb::GetRequest { id: "p1".into() })
        .await
        .expect("ingest key may get");
    assert_eq!(
        ingest
            .search()
            .search(search_req())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        ingest
            .admin()
            .status(pb::StatusRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    // search: searches only.
    let hits = search
        .search()
        .search(search_req())
        .await
        .expect("search key may search")
        .into_inner();
    assert_eq!(ids(&hits), vec!["p1"]);
    assert_eq!(
        upsert(&search).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        search
            .ingest()
            .delete(pb::DeleteRequest {
                ids: vec!["p1".into()]
            })
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        search
            .admin()
            .status(pb::StatusRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    // admin: admin service only.
    admin
        .admin()
        .status(pb::StatusRequest {})
        .await
        .expect("admin key may read status");
    assert_eq!(
        admin
            .search()
            .search(search_req())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        upsert(&admin).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // Health stays open without a key.
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health is open");
    assert_eq!(
        h.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // The refusals are counted by RPC and code on the metrics port; the probes answer.
    let metrics = server.metrics_addr.clone().expect("metrics port announced");
    let (code, body) = http_get(&metrics, "/metrics");
    assert_eq!(code, 200);
    assert!(
        body.contains(
            r#"mmsearch_requests_total{code="UNAUTHENTICATED",rpc="SearchService/Search"} 2"#
        ),
        "{body}"
    );
    assert!(
        body.contains(
            r#"mmsearch_requests_total{code="PERMISSION_DENIED",rpc="AdminService/Status"} 2"#
        ),
        "{body}"
    );
    assert!(
        body.contains(r#"mmsearch_requests_total{code="OK",rpc="SearchService/Search"} 1"#),
        "{body}"
    );
    assert!(
        body.contains(r#"mmsearch_layer_vectors{layer="fresh",space="shared"} 1"#),
        "{body}"
    );
    assert!(
        body.contains("mmsearch_stage_duration_seconds_bucket{stage=\"search\""),
        "{body}"
    );
    assert!(
        body.contains("mmsearch_memory_bytes{kind=\"rss\"}"),
        "{body}"
    );
    // RocksDB's parts over all families (the one write above sits in a memtable).
    for kind in [
        "rocksdb_block_cache",
        "rocksdb_memtables",
        "rocksdb_table_readers",
        "rocksdb_pinned_blocks",
        "mmap",
    ] {
        assert!(
            body.contains(&format!("mmsearch_memory_bytes{{kind=\"{kind}\"}}")),
            "{kind}: {body}"
        );
    }
    assert!(
        !body.contains("mmsearch_memory_bytes{kind=\"rocksdb_memtables\"} 0\n"),
        "{body}"
    );
    assert_eq!(http_get(&metrics, "/healthz").0, 200);
    assert_eq!(http_get(&metrics, "/readyz").0, 200);
}

#[tokio::test]
async fn auth_cannot_be_left_off_by_accident() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let config = dir.with_extension("toml");
    std::fs::write(&config, config_with_space(DIM, "")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mmsearch"))
        .args([
            "serve",
            "--no-models",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a server with no keys and auth not disabled must refuse to start"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no [[auth.keys]]") && err.contains("--insecure-no-auth"),
        "{err}"
    );
}

#[tokio::test]
async fn tls_works_with_the_test_certificate_and_plaintext_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let tls = tls_dir();
    let server = tls_server(&tmp.path().join("d"), &[]);
    let https = server.addr.replace("http://127.0.0.1", "https://localhost");
    let opts = ClientOptions {
        server: https.clone(),
        ca_cert: Some(tls.join("ca.pem")),
        ..Default::default()
    };
    let conn = opts
        .connect()
        .await
        .expect("TLS handshake with the test CA");
    conn.admin()
        .status(pb::StatusRequest {})
        .await
        .expect("call over TLS");

    // Plaintext HTTP/2 to the TLS port: connecting or the first call fails.
    let plain = ClientOptions {
        server: server.addr.clone(),
        ..Default::default()
    };
    assert!(
        is_refused(plain).await,
        "plaintext must not be served when TLS is on"
    );
    // A client that does not trust the CA is refused by the handshake.
    let untrusting = ClientOptions {
        server: https,
        ..Default::default()
    };
    assert!(
        is_refused(untrusting).await,
        "an unknown CA must fail verification"
    );
}

#[tokio::test]
async fn client_certificates_are_required_when_configured() {
    let tmp = tempfile::tempdir().unwrap();
    let tls = tls_dir();
    let ca = tls.join("ca.pem");
    let server = tls_server(
        &tmp.path().join("d"),
        &["--tls-client-ca", ca.to_str().unwrap()],
    );
    let https = server.addr.replace("http://127.0.0.1", "https://localhost");
    let without = ClientOptions {
        server: https.clone(),
        ca_cert: Some(ca.clone()),
        ..Default::default()
    };
    assert!(
        is_refused(without).await,
        "a client without a certificate must be refused"
    );
    let with = ClientOptions {
        server: https,
        ca_cert: Some(ca),
        client_cert: Some(tls.join("client.pem")),
        client_key: Some(tls.join("client.key")),
        ..Default::default()
    };
    with.connect()
        .await
        .expect("mutual TLS")
        .admin()
        .status(pb::StatusRequest {})
        .await
        .expect("call with client cert");
}

#[tokio::test]
async fn a_flood_beyond_the_limit_gets_resource_exhausted_quickly() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = r#"
[limits.concurrency]
queue_timeout_ms = 20000
search = { max_in_flight = 4, max_queued = 4 }
ingest = { max_in_flight = 2, max_queued = 1 }
admin = { max_in_flight = 2, max_queued = 2 }
"#;
    let server = start_raw(
        &tmp.path().join("d"),
        &config_with_space(DIM, limits),
        &["--insecure-no-auth"],
    );
    let conn = connect(&server.addr, None).await;

    // Two upsert streams that stay open hold both ingest slots; a third waits in the queue.
    let mut holders = Vec::new();
    for i in 0..3 {
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::UpsertRequest>(4);
        tx.send(pb::UpsertRequest {
            item: Some(probe_item(&format!("held{i}"))),
        })
        .await
        .unwrap();
        let mut client = conn.ingest();
        let call = tokio::spawn(async move {
            client
                .upsert(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        holders.push((tx, call));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The flood: every further stream is refused at once, not queued without bound.
    let started = Instant::now();
    let mut refused = 0;
    for i in 0..20 {
        let mut client = conn.ingest();
        let r = client
            .upsert(tokio_stream::iter(vec![pb::UpsertRequest {
                item: Some(probe_item(&format!("f{i}"))),
            }]))
            .await;
        match r {
            Err(s) if s.code() == Code::ResourceExhausted => refused += 1,
            other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
        }
    }
    assert_eq!(refused, 20);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refusals took {:?}",
        started.elapsed()
    );

    // Other services keep their own limits: searches and admin calls still succeed.
    for _ in 0..10 {
        conn.search()
            .search(vector_query(normalise(vec![1.0; DIM]), 5))
            .await
            .expect("search within its limit");
    }
    conn.admin()
        .status(pb::StatusRequest {})
        .await
        .expect("admin within its limit");

    // Close the held streams: all three (including the queued one) are acknowledged.
    for (tx, call) in holders {
        drop(tx);
        let summary = call
            .await
            .unwrap()
            .expect("held stream completes")
            .into_inner();
        assert_eq!(summary.accepted, 1);
    }
    for i in 0..3 {
        conn.ingest()
            .get(pb::GetRequest {
                id: format!("held{i}"),
            })
            .await
            .expect("acknowledged item present");
    }

    // A search flood far over 4 + 4: each call is answered OK or RESOURCE_EXHAUSTED, nothing else.
    let mut calls = Vec::new();
    for _ in 0..200 {
        let mut c = conn.search();
        calls.push(tokio::spawn(async move {
            c.search(vector_query(normalise(vec![1.0; DIM]), 5)).await
        }));
    }
    let (mut ok, mut exhausted) = (0, 0);
    for c in calls {
        match c.await.unwrap() {
            Ok(_) => ok += 1,
            Err(s) if s.code() == Code::ResourceExhausted => exhausted += 1,
            Err(s) => panic!("unexpected status under flood: {s:?}"),
        }
    }
    assert!(
        ok >= 8,
        "in-limit searches must succeed (ok {ok}, exhausted {exhausted})"
    );
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let mut server = start_raw(
        &data,
        &format!("shutdown_grace_ms = 20000\n{}", config_with_space(DIM, "")),
        &["--insecure-no-auth", "--metrics-listen", "127.0.0.1:0"],
    );
    let metrics = server.metrics_addr.clone().unwrap();
    let conn = connect(&server.addr, None).await;

    // An upsert stream in flight when the signal arrives, and searches running throughout.
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::UpsertRequest>(16);
    let mut ingest = conn.ingest();
    let stream_call = tokio::spawn(async move {
        ingest
            .upsert(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    for i in 0..50 {
        tx.send(pb::UpsertRequest {
            item: Some(probe_item(&format!("before{i}"))),
        })
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.signal_term();
    // Draining: readiness turns off at once so load balancers stop sending.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if http_get(&metrics, "/readyz").0 == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz did not report draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The in-flight stream keeps going after the signal and is acknowledged.
    for i in 0..50 {
        tx.send(pb::UpsertRequest {
            item: Some(probe_item(&format!("after{i}"))),
        })
        .await
        .unwrap();
    }
    drop(tx);
    let summary = stream_call
        .await
        .unwrap()
        .expect("in-flight stream completes after SIGTERM")
        .into_inner();
    assert_eq!(summary.accepted, 100);

    let status = server.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit status {status:?}");

    // Everything acknowledged is there after a restart.
    let server = Server::start_with(&data, &server.config.clone(), &["--no-models"]);
    let conn = connect(&server.addr, None).await;
    for i in 0..50 {
        for prefix in ["before", "after"] {
            conn.ingest()
                .get(pb::GetRequest {
                    id: format!("{prefix}{i}"),
                })
                .await
                .expect("acknowledged before shutdown");
        }
    }
}

#[tokio::test]
async fn shutdown_does_not_wait_past_the_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = start_raw(
        &tmp.path().join("d"),
        &format!("shutdown_grace_ms = 1000\n{}", config_with_space(DIM, "")),
        &["--insecure-no-auth"],
    );
    let conn = connect(&server.addr, None).await;
    // A client that never closes its stream.
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::UpsertRequest>(4);
    tx.send(pb::UpsertRequest {
        item: Some(probe_item("stuck")),
    })
    .await
    .unwrap();
    let mut ingest = conn.ingest();
    let _call = tokio::spawn(async move {
        ingest
            .upsert(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    server.signal_term();
    let status = server.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop(tx);
}
