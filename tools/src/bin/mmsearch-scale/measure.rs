//! One query set at concurrency 1 through every layer, then a cold-started server:
//!
//! 1. in process: `BaseSegment::search` (the index alone), `Collection::search` (index +
//!    mutable layer + live-item check), and the search pipeline as the gRPC handler runs it
//!    (request conversion, validation, search, hydration from RocksDB, response conversion);
//! 2. cold start: `mmsearch serve` spawned on the same data directory (optionally after
//!    dropping the page cache); time from spawn to the first answered query, RSS then, and the
//!    latencies of the first queries;
//! 3. the same queries over gRPC on loopback, steady state.
//!
//! The difference between 1's pipeline and 3 is what the gRPC path costs.

use crate::{summary, Catalogue};
use clap::Args;
use mmsearch::client::ClientOptions;
use mmsearch::config::Config;
use mmsearch::engine::Engine;
use mmsearch::pb;
use mmsearch::pipeline::search::prepare_query_vector;
use mmsearch::server::convert;
use mmsearch_index::synthetic::Clustered;
use mmsearch_tools::stats::proc_memory_mb;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct MeasureArgs {
    /// Server config (the spaces and index parameters the data directory was built with).
    #[arg(long)]
    config: PathBuf,
    #[arg(long)]
    data_dir: PathBuf,
    /// The `mmsearch` binary to cold-start.
    #[arg(long)]
    server_bin: PathBuf,
    /// Keep it below the kernel's ephemeral range (32768+ on Linux): a client that keeps
    /// connecting to a port nobody listens on yet can be handed that very port as its own
    /// source port, connect to itself and then hold the port the server wants to bind.
    #[arg(long, default_value = "127.0.0.1:29899")]
    listen: String,
    #[command(flatten)]
    catalogue: Catalogue,
    #[arg(long, default_value_t = 2000)]
    queries: usize,
    /// Queries run on every path before its timed pass.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// HNSW beam width; default: the config's `index.ef_search`.
    #[arg(long)]
    ef: Option<usize>,
    /// Drop the kernel page cache (root only) before each open, so they read from disk.
    #[arg(long)]
    drop_caches: bool,
    /// Only the cold start and the gRPC pass.
    #[arg(long)]
    skip_direct: bool,
    /// Server stdout/stderr go here.
    #[arg(long, default_value = "/tmp/mmsearch-scale-server.log")]
    server_log: PathBuf,
    /// Give up waiting for the first answer after this many seconds.
    #[arg(long, default_value_t = 1800)]
    start_timeout: u64,
}

fn print(v: serde_json::Value) {
    println!("{v}");
}

fn drop_page_cache() -> anyhow::Result<()> {
    let synced = Command::new("sync").status()?;
    anyhow::ensure!(synced.success(), "sync failed");
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|e| anyhow::anyhow!("cannot drop the page cache (needs root): {e}"))
}

fn request(space: &str, values: &[f32], top_k: usize, ef: usize) -> pb::SearchRequest {
    pb::SearchRequest {
        query: Some(pb::search_request::Query::Vector(pb::Vector {
            space: space.to_string(),
            values: values.to_vec(),
        })),
        top_k: top_k as u32,
        ef: ef as u32,
        ..Default::default()
    }
}

/// What a response says: its ids, and the server-side stage times (search includes the hop to
/// the blocking pool, hydrate the RocksDB reads) that split latency into engine and transport.
struct Answer {
    ids: Vec<String>,
    search_us: u64,
    hydrate_us: u64,
}

fn answer(r: &pb::SearchResponse) -> Answer {
    let timing = r.timing.clone().unwrap_or_default();
    Answer {
        ids: r.hits.iter().map(|h| h.id.clone()).collect(),
        search_us: timing.search_us,
        hydrate_us: timing.hydrate_us,
    }
}

/// Median server-side stage times of a pass, in milliseconds.
fn stages(answers: &[Answer]) -> serde_json::Value {
    let median = |f: &dyn Fn(&Answer) -> u64| {
        let mut v: Vec<f64> = answers.iter().map(|a| f(a) as f64 / 1e3).collect();
        v.sort_by(f64::total_cmp);
        mmsearch_tools::stats::percentile(&v, 0.5)
    };
    serde_json::json!({ "search_p50_ms": median(&|a| a.search_us), "hydrate_p50_ms": median(&|a| a.hydrate_us) })
}

/// Times `f` over every query after a warm-up pass; returns the summary and f's outputs.
async fn timed<T, F, Fut>(
    queries: &[Vec<f32>],
    warmup: usize,
    mut f: F,
) -> anyhow::Result<(serde_json::Value, Vec<T>)>
where
    F: FnMut(&[f32]) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    for q in queries.iter().cycle().take(warmup) {
        f(q).await?;
    }
    let mut lat = Vec::with_capacity(queries.len());
    let mut out = Vec::with_capacity(queries.len());
    let started = Instant::now();
    for q in queries {
        let t = Instant::now();
        out.push(f(q).await?);
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok((summary(lat, started.elapsed().as_secs_f64()), out))
}

pub async fn run(args: MeasureArgs) -> anyhow::Result<()> {
    let c = &args.catalogue;
    let mut config = Config::load(Some(&args.config))?;
    config.data_dir = args.data_dir.clone();
    config.no_models = true;
    // The planner's ef rule, so the index-alone numbers use the beam the server would.
    let ef = config.engine().collection().planner.ef(args.top_k, args.ef);
    let k = args.top_k;
    // Queries: fresh points near the blobs of rows spread over the whole catalogue.
    let mut gen = Clustered::new(c.dim, c.clusters, c.seed);
    let raw: Vec<Vec<f32>> = (0..args.queries as u64)
        .map(|i| gen.row((i * 7919 + 13) % c.n.max(1), 1, c.spread))
        .collect();

    let mut pipeline_ids = None;
    let mut pipeline_p50 = None;
    if !args.skip_direct {
        if args.drop_caches {
            drop_page_cache()?;
        }
        let t = Instant::now();
        let engine = Engine::open(config.engine(), None).await?;
        let collection = engine.collection().clone();
        let open_s = t.elapsed().as_secs_f64();
        let rss_open = proc_memory_mb(std::process::id(), "VmRSS");
        let prepared: Vec<Vec<f32>> = raw
            .iter()
            .map(|q| prepare_query_vector(collection.specs(), &c.space, q))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("query: {e}"))?;

        let generation = collection.base_generation();
        let segment = generation.segment(&c.space).ok_or_else(|| {
            anyhow::anyhow!(
                "generation {} has no graph for space {:?}: rebuild first",
                generation.id,
                c.space
            )
        })?;
        let (index, _) = timed(&prepared, args.warmup, |q| {
            let hits = segment.search(q, k, ef, &|_| true);
            async move { anyhow::Ok(hits.len()) }
        })
        .await?;
        let (coll, _) = timed(&prepared, args.warmup, |q| {
            let hits = collection
                .search(&c.space, q, k, Some(ef), None, None)
                .map(|o| o.hits.len());
            async move { hits.map_err(anyhow::Error::from) }
        })
        .await?;
        let searcher = engine.searcher();
        let (pipeline, responses) = timed(&raw, args.warmup, |q| {
            let req = convert::search_request(request(&c.space, q, k, ef));
            async move {
                let req = req.map_err(|e| anyhow::anyhow!("request: {e}"))?;
                let result = searcher
                    .search(req)
                    .await
                    .map_err(|e| anyhow::anyhow!("search: {e}"))?;
                anyhow::Ok(answer(&convert::search_response(result)))
            }
        })
        .await?;
        pipeline_p50 = pipeline["p50_ms"].as_f64();
        let pipeline_stages = stages(&responses);
        pipeline_ids = Some(responses.into_iter().map(|a| a.ids).collect::<Vec<_>>());
        print(serde_json::json!({
            "measure": "direct", "open_seconds": open_s, "rss_mb_after_open": rss_open,
            "rss_mb_after_queries": proc_memory_mb(std::process::id(), "VmRSS"),
            "rss_anon_mb_after_queries": proc_memory_mb(std::process::id(), "RssAnon"),
            "vectors": segment.len(), "ef": ef, "top_k": k,
            "index": index, "collection": coll, "pipeline": pipeline, "pipeline_stages": pipeline_stages,
        }));
        drop(engine);
        drop(generation);
        anyhow::ensure!(
            std::sync::Arc::strong_count(&collection) == 1,
            "collection still shared; cannot hand the store to the server"
        );
        drop(collection);
    }

    // Cold start.
    let page_cache = if args.drop_caches {
        drop_page_cache()?;
        "dropped"
    } else {
        "warm"
    };
    let mut log = std::fs::File::create(&args.server_log)?;
    let spawned = Instant::now();
    let mut child = Command::new(&args.server_bin)
        .arg("serve")
        .arg("--config")
        .arg(&args.config)
        .arg("--data-dir")
        .arg(&args.data_dir)
        .args([
            "--listen",
            &args.listen,
            "--no-models",
            "--insecure-no-auth",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log.try_clone()?))
        .spawn()?;
    // Connect only once the server says it listens: polling a closed port is what invites the
    // self-connection described at `listen`. The line is printed right after the bind.
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no server stdout"))?;
    let (listening_tx, listening_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        let mut tx = Some(listening_tx);
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = writeln!(log, "{line}");
            if line.contains("listening on") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Instant::now());
                }
            }
        }
    });
    let mut server = ServerGuard(child);
    let listening_at = tokio::select! {
        at = listening_rx => at.ok(),
        _ = tokio::time::sleep(Duration::from_secs(args.start_timeout)) => None,
    };
    let Some(listening_at) = listening_at else {
        anyhow::bail!(
            "server did not start listening; see {}",
            args.server_log.display()
        );
    };
    let pid = server.0.id();
    let opts = ClientOptions {
        server: format!("http://{}", args.listen),
        ..Default::default()
    };
    let first_req = request(&c.space, &raw[0], k, ef);
    let mut attempts = 0u32;
    let (mut client, first_ms) = loop {
        if let Some(status) = server.0.try_wait()? {
            anyhow::bail!(
                "server exited ({status}) before answering; see {}",
                args.server_log.display()
            );
        }
        anyhow::ensure!(
            spawned.elapsed() < Duration::from_secs(args.start_timeout),
            "no answer within {}s",
            args.start_timeout
        );
        attempts += 1;
        if let Ok(conn) = opts.connect().await {
            let mut client = conn.search();
            let t = Instant::now();
            if client.search(first_req.clone()).await.is_ok() {
                break (client, t.elapsed().as_secs_f64() * 1e3);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let first_answer_s = spawned.elapsed().as_secs_f64();
    let rss_first = proc_memory_mb(pid, "VmRSS");
    // Anonymous = heap (graph, catalogue, caches); file = mapped generation pages, which the
    // kernel can drop and re-read under memory pressure.
    let (anon_first, file_first) = (
        proc_memory_mb(pid, "RssAnon"),
        proc_memory_mb(pid, "RssFile"),
    );
    // The next queries one by one: how long the cold tail lasts.
    let mut following = Vec::new();
    for q in raw.iter().skip(1).take(20) {
        let t = Instant::now();
        client.search(request(&c.space, q, k, ef)).await?;
        following.push((t.elapsed().as_secs_f64() * 1e3 * 1000.0).round() / 1000.0);
    }
    let (grpc, responses) = timed(&raw, args.warmup, |q| {
        let mut client = client.clone();
        let req = request(&c.space, q, k, ef);
        async move { anyhow::Ok(answer(&client.search(req).await?.into_inner())) }
    })
    .await?;
    print(serde_json::json!({
        "measure": "cold_start", "page_cache": page_cache, "first_answer_seconds": first_answer_s,
        "listening_seconds": (listening_at - spawned).as_secs_f64(),
        "first_query_ms": first_ms, "attempts": attempts, "next_20_queries_ms": following,
        "server_rss_mb_at_first_answer": rss_first, "server_rss_anon_mb_at_first_answer": anon_first,
        "server_rss_file_mb_at_first_answer": file_first,
    }));
    let same = pipeline_ids.as_ref().map(|p| {
        p.iter()
            .zip(&responses)
            .filter(|(a, b)| **a == b.ids)
            .count() as f64
            / responses.len() as f64
    });
    let grpc_p50 = grpc["p50_ms"].as_f64();
    print(serde_json::json!({
        "measure": "grpc", "ef": ef, "top_k": k, "grpc": grpc, "server_stages": stages(&responses),
        "server_rss_mb_steady": proc_memory_mb(pid, "VmRSS"), "server_vmhwm_mb": proc_memory_mb(pid, "VmHWM"),
        "server_rss_anon_mb_steady": proc_memory_mb(pid, "RssAnon"), "server_rss_file_mb_steady": proc_memory_mb(pid, "RssFile"),
        "same_results_as_in_process": same,
        "grpc_over_pipeline_p50": match (grpc_p50, pipeline_p50) { (Some(g), Some(p)) if p > 0.0 => Some(g / p), _ => None },
    }));
    server.terminate();
    Ok(())
}

/// Stops the spawned server on every exit path (SIGTERM, then SIGKILL after 30 s).
struct ServerGuard(Child);

impl ServerGuard {
    fn terminate(&mut self) {
        // SAFETY: kill(2) with a pid this process spawned and has not reaped yet.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.terminate();
        }
    }
}
