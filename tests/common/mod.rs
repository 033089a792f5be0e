//! Test harness: a real `mmsearch serve` process on 127.0.0.1:0 with its own data directory,
//! and real gRPC clients.
#![allow(dead_code)]

use mmsearch::pb;
use pb::admin_service_client::AdminServiceClient;
use pb::ingest_service_client::IngestServiceClient;
use pb::search_service_client::SearchServiceClient;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The `mmsearch` binary the harness starts: cargo names it to the root package's tests; the
/// tests of another workspace package (tools/tests, which include this file) cannot get it from
/// cargo and give it with [`set_server_binary`] before starting a server.
static SERVER_BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Sets the server binary to what `locate` returns (called once per test binary, the first time).
pub fn set_server_binary(locate: impl FnOnce() -> PathBuf) {
    SERVER_BINARY.get_or_init(locate);
}

fn server_binary() -> &'static Path {
    SERVER_BINARY.get_or_init(|| match option_env!("CARGO_BIN_EXE_mmsearch") {
        Some(path) => PathBuf::from(path),
        None => panic!("outside the mmsearch package the tests must call set_server_binary first"),
    })
}

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    /// `host:port` of the operations HTTP port, when the config or flags enable it.
    pub metrics_addr: Option<String>,
}

impl Server {
    /// Starts a server without models on `data_dir` with `config_toml`.
    pub fn start(data_dir: &Path, config_toml: &str) -> Server {
        let config = data_dir.with_extension("toml");
        std::fs::write(&config, config_toml).expect("write config");
        Self::start_with(data_dir, &config, &["--no-models"])
    }

    /// Starts with auth disabled explicitly (`--insecure-no-auth`), as the demo does.
    pub fn start_with(data_dir: &Path, config: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--insecure-no-auth"];
        args.extend_from_slice(extra);
        Self::start_raw(data_dir, config, &args)
    }

    /// Starts exactly as configured: auth on unless the config or `extra` turn it off.
    pub fn start_raw(data_dir: &Path, config: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(server_binary())
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(extra)
            .env("RUST_LOG", "warn,mmsearch=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mmsearch");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut line = String::new();
        let mut metrics_addr = None;
        let addr = loop {
            line.clear();
            let n = reader.read_line(&mut line).expect("read server stdout");
            assert!(n > 0, "server exited before listening");
            if let Some(a) = line.trim().strip_prefix("mmsearch metrics on ") {
                metrics_addr = Some(a.to_string());
            }
            if let Some(a) = line.trim().strip_prefix("mmsearch listening on ") {
                break format!("http://{a}");
            }
            assert!(Instant::now() < deadline, "server did not start in time");
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        Server {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            config: config.to_path_buf(),
            metrics_addr,
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.addr.clone())
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }

    pub async fn search(&self) -> SearchServiceClient<Channel> {
        SearchServiceClient::new(self.channel().await).max_encoding_message_size(64 << 20)
    }

    pub async fn ingest(&self) -> IngestServiceClient<Channel> {
        IngestServiceClient::new(self.channel().await).max_encoding_message_size(64 << 20)
    }

    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel().await)
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        unsafe_sigterm(self.child.id());
    }

    /// Waits for the process to exit; panics (after killing it) past `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("server did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_sigterm(self.child.id());
        self.child.wait().expect("wait")
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn config_with_space(dim: usize, extra: &str) -> String {
    format!(
        r#"
[[spaces]]
name = "shared"
dim = {dim}
metric = "cosine"

[index]
m = 16
ef_construction = 200
ef_search = 64
min_graph_size = 64
max_fresh = 1000000

{extra}
"#
    )
}

// Not every test binary uses both.
#[allow(unused_imports)]
pub use mmsearch_index::synthetic::{normalise, Clustered};

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn item(id: &str, title: &str, category: &str, price: f64, vector: Vec<f32>) -> pb::Item {
    pb::Item {
        id: id.into(),
        title: title.into(),
        category: category.into(),
        price,
        vectors: vec![pb::Vector {
            space: "shared".into(),
            values: vector,
        }],
        ..Default::default()
    }
}

pub async fn upsert(server: &Server, items: Vec<pb::Item>) -> pb::UpsertSummary {
    let reqs: Vec<pb::UpsertRequest> = items
        .into_iter()
        .map(|i| pb::UpsertRequest { item: Some(i) })
        .collect();
    server
        .ingest()
        .await
        .upsert(tokio_stream::iter(reqs))
        .await
        .expect("upsert")
        .into_inner()
}

pub fn vector_query(v: Vec<f32>, k: u32) -> pb::SearchRequest {
    pb::SearchRequest {
        query: Some(pb::search_request::Query::Vector(pb::Vector {
            space: "shared".into(),
            values: v,
        })),
        top_k: k,
        ..Default::default()
    }
}

pub fn ids(resp: &pb::SearchResponse) -> Vec<String> {
    resp.hits.iter().map(|h| h.id.clone()).collect()
}

pub async fn rebuild(server: &Server) -> Vec<pb::RebuildProgress> {
    let mut stream = server
        .admin()
        .await
        .rebuild(pb::RebuildRequest {})
        .await
        .expect("rebuild")
        .into_inner();
    let mut seen = Vec::new();
    while let Some(p) = stream.message().await.expect("rebuild progress") {
        seen.push(p);
    }
    seen
}
