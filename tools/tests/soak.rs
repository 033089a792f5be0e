//! A short soak: mmsearch-soak against a real server, restarted once with SIGTERM in the middle.
//! Every acknowledged write must survive and be visible, and no request may fail unexpectedly.
//! The server is the workspace's `mmsearch` binary (built by the harness if needed).

mod common;

use common::Server;
use std::path::Path;
use std::process::Command;

const CONFIG: &str = r#"
[[spaces]]
name = "shared"
dim = 384
metric = "cosine"

[index]
min_graph_size = 64
max_fresh = 300
"#;

fn soak(server: &Server, dir: &Path, phase: usize, seconds: u32) -> serde_json::Value {
    let summary = dir.join(format!("summary{phase}.json"));
    let status = Command::new(env!("CARGO_BIN_EXE_mmsearch-soak"))
        .args([
            "--server",
            &server.addr,
            "--duration",
            &format!("{seconds}s"),
            "--concurrency",
            "4",
        ])
        .args([
            "--rebuild-every",
            "4",
            "--sample-every",
            "2",
            "--max-ids",
            "1000",
            "--seed",
            "7",
        ])
        .arg("--server-pid")
        .arg(server.child.id().to_string())
        .arg("--csv")
        .arg(dir.join("soak.csv"))
        .arg("--state")
        .arg(dir.join("state.json"))
        .arg("--summary")
        .arg(&summary)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run mmsearch-soak");
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary written"))
            .expect("summary is JSON");
    assert!(status.success(), "soak phase {phase} failed: {s:#}");
    s
}

#[test]
fn soak_with_restart_keeps_every_acknowledged_write() {
    common::use_workspace_server();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, CONFIG);
    let first = soak(&server, dir.path(), 1, 6);
    assert!(
        server.terminate().success(),
        "server did not exit cleanly on SIGTERM"
    );

    let mut server = Server::start_with(&data, &server.config.clone(), &["--no-models"]);
    let second = soak(&server, dir.path(), 2, 6);
    assert!(server.terminate().success());

    for s in [&first, &second] {
        assert_eq!(s["lost_acked_writes"], 0, "{s:#}");
        assert_eq!(s["unexpected_errors"], 0, "{s:#}");
        assert!(s["acked_upserts"].as_u64().unwrap() > 0, "{s:#}");
        for kind in [
            "search_vector",
            "search_item",
            "search_filtered",
            "upsert_stream",
            "delete",
            "get",
            "check",
            "rebuild",
        ] {
            assert!(
                s["requests"][kind]["requests"].as_u64().unwrap_or(0) > 0,
                "no {kind} requests: {s:#}"
            );
        }
        assert!(
            s["final_verification"]["checked"].as_u64().unwrap() > 0,
            "{s:#}"
        );
    }
    let restart = &second["restart_verification"];
    assert!(restart["checked"].as_u64().unwrap() > 0, "{second:#}");
    assert_eq!(restart["lost"], 0, "{second:#}");
    assert_eq!(restart["resurrected"], 0, "{second:#}");
    let csv = std::fs::read_to_string(dir.path().join("soak.csv")).unwrap();
    assert!(
        csv.lines().count() > 4
            && csv
                .lines()
                .nth(1)
                .unwrap()
                .split(',')
                .nth(2)
                .is_some_and(|r| !r.is_empty()),
        "{csv}"
    );
}
