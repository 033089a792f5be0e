use super::ServeArgs;
use crate::config::Config;
use crate::engine::Engine;
use crate::telemetry::http::{Phase, Probe};
use anyhow::Context;
use std::sync::Arc;

pub fn main(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_json);
    let config = load(args)?;
    let rt = config
        .runtime
        .build()
        .context("starting the tokio runtime")?;
    tracing::info!(
        worker_threads = config.runtime.effective_worker_threads(),
        max_blocking_threads = config.runtime.effective_max_blocking_threads(),
        "runtime"
    );
    rt.block_on(run(config))
}

/// The config file with the flags applied, validated.
fn load(args: ServeArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(d) = args.snapshot_dir {
        config.snapshot_dir = Some(d);
    }
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(m) = args.models {
        config.encode.model_dir = m;
    }
    if args.no_models {
        config.no_models = true;
    }
    if args.insecure_no_auth {
        config.auth.enabled = false;
    }
    if let Some(m) = args.metrics_listen {
        config.metrics_listen = m;
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(crate::server::tls::TlsConfig {
            cert,
            key,
            client_ca: args.tls_client_ca,
        });
    }
    config.validate()?;
    Ok(config)
}

async fn run(config: Config) -> anyhow::Result<()> {
    if !config.auth.enabled {
        tracing::warn!("AUTH DISABLED (--insecure-no-auth / [auth] enabled = false): anyone who can reach {} may search, ingest and rebuild", config.listen);
    }

    // Shutdown starts here so a signal during model loading is not lost, and readiness
    // flips to "draining" the moment it arrives.
    let probe = Probe::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    {
        let probe = probe.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            probe.set_phase(Phase::Draining);
            let _ = stop_tx.send(true);
        });
    }

    // The operations port comes up first: /healthz answers and /readyz says "starting"
    // while models load and the newest generation is mapped.
    if !config.metrics_listen.is_empty() {
        let ops = tokio::net::TcpListener::bind(&config.metrics_listen)
            .await
            .with_context(|| format!("binding the metrics port {}", config.metrics_listen))?;
        let ops_addr = ops.local_addr()?;
        println!("mmsearch metrics on {ops_addr}");
        // Keeps serving while draining (so /readyz can say 503) until the process exits.
        tokio::spawn(crate::telemetry::http::serve(
            ops,
            probe.clone(),
            std::future::pending(),
        ));
    }

    if config.no_models {
        tracing::warn!("serving without models: only vector, item and LEXICAL text queries work; the others answer UNIMPLEMENTED");
    }
    let engine = Arc::new(Engine::start(config.engine()).await?);
    let server_config = config.server();
    let listener = tokio::net::TcpListener::bind(&server_config.listen)
        .await
        .with_context(|| format!("binding {}", server_config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "serving");
    probe.attach(engine.clone());
    if !*stop_rx.borrow() {
        probe.set_phase(Phase::Ready);
    }
    // Tests and scripts read the bound address (the port may have been 0) from this line.
    println!("mmsearch listening on {addr}");

    let grace = std::time::Duration::from_millis(server_config.shutdown_grace_ms);
    let server = crate::server::serve(
        listener,
        engine.clone(),
        &server_config,
        stopped(stop_rx.clone()),
    );
    let grace_over = async {
        stopped(stop_rx).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        r = server => r?,
        _ = grace_over => tracing::warn!(?grace, "grace period over with requests still in flight; exiting anyway"),
    }
    // Acknowledged writes are already in the synced WAL; flushing memtables makes the next
    // start skip WAL replay.
    let e = engine.clone();
    tokio::task::spawn_blocking(move || e.flush()).await??;
    tracing::info!("shut down cleanly");
    Ok(())
}

async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            // The signal task is gone (runtime shutting down); treat as stop.
            return;
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn,hnsw_rs=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
