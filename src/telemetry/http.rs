//! The operations HTTP port: `/metrics` (Prometheus text), `/healthz` (the process is up and
//! its runtime answers), `/readyz` (models and an index generation are loaded and the server
//! is not draining). Kept off the gRPC port so probes and scrapes never compete with, or need
//! the credentials of, API traffic.

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

/// Lifecycle as the orchestrator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Loading models, opening the store, mapping the newest generation.
    Starting = 0,
    Ready = 1,
    /// SIGTERM received: finishing in-flight requests, refusing new ones.
    Draining = 2,
}

/// Shared between the server's start-up/shutdown code and the probe handlers.
#[derive(Default)]
pub struct Probe {
    phase: AtomicU8,
    source: OnceLock<Arc<dyn StateSource>>,
}

impl Probe {
    pub fn new() -> Arc<Probe> {
        Arc::new(Probe::default())
    }

    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Release);
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            1 => Phase::Ready,
            2 => Phase::Draining,
            _ => Phase::Starting,
        }
    }

    /// Called once the engine is open (models, if any, are loaded before it).
    pub fn attach(&self, source: Arc<dyn StateSource>) {
        let _ = self.source.set(source);
    }
}

pub fn router(probe: Arc<Probe>) -> Router {
    let ready_probe = probe.clone();
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route(
            "/readyz",
            get(move || {
                let probe = ready_probe.clone();
                async move {
                    match probe.phase() {
                        Phase::Ready => (StatusCode::OK, "ready\n"),
                        Phase::Starting => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "starting: loading models and index\n",
                        ),
                        Phase::Draining => {
                            (StatusCode::SERVICE_UNAVAILABLE, "draining: shutting down\n")
                        }
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let probe = probe.clone();
                async move {
                    if let Some(source) = probe.source.get().cloned() {
                        // State is computed by walking the catalogue; keep that off the async workers.
                        let _ =
                            tokio::task::spawn_blocking(move || refresh_gauges(&source.state()))
                                .await;
                    }
                    super::metrics()
                        .memory_bytes
                        .with_label_values(&["rss"])
                        .set(super::rss_bytes() as i64);
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        super::render(),
                    )
                }
            }),
        )
}

/// The state gauges, read from whatever owns the state (the engine) at scrape time rather than
/// pushed on every change.
#[derive(Debug, Clone, Default)]
pub struct StateGauges {
    pub items: u64,
    pub generation: u64,
    /// Per space: (name, base vectors, fresh vectors, tombstones).
    pub layers: Vec<(String, u64, u64, u64)>,
    /// Memory by kind (`mmsearch_memory_bytes{kind}`) as the owner breaks it down, e.g.
    /// `rocksdb_block_cache`; `rss` and `mmap` are set here.
    pub memory: Vec<(&'static str, u64)>,
    pub mapped_bytes: u64,
    pub rebuild_running: bool,
    /// Done / total work units of the running (or last) rebuild; `None` before the first.
    pub rebuild_progress: Option<(u64, u64)>,
}

/// Implemented by the engine; lets this module export its state without depending on it.
pub trait StateSource: Send + Sync {
    fn state(&self) -> StateGauges;
}

fn refresh_gauges(g: &StateGauges) {
    let m = super::metrics();
    m.items.set(g.items as i64);
    m.generation.set(g.generation as i64);
    for (name, base, fresh, tombstones) in &g.layers {
        m.layer_vectors
            .with_label_values(&[name, "base"])
            .set(*base as i64);
        m.layer_vectors
            .with_label_values(&[name, "fresh"])
            .set(*fresh as i64);
        m.layer_vectors
            .with_label_values(&[name, "tombstones"])
            .set(*tombstones as i64);
    }
    for (kind, bytes) in &g.memory {
        m.memory_bytes.with_label_values(&[kind]).set(*bytes as i64);
    }
    m.memory_bytes
        .with_label_values(&["mmap"])
        .set(g.mapped_bytes as i64);
    m.rebuild_running.set(i64::from(g.rebuild_running));
    if let Some((done, total)) = g.rebuild_progress {
        m.rebuild_done.set(done as i64);
        m.rebuild_total.set(total as i64);
    }
}

/// Serves the operations port until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    probe: Arc<Probe>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(probe))
        .with_graceful_shutdown(shutdown)
        .await
}
