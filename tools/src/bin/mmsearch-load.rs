//! Closed-loop gRPC load generator for mmsearch: N concurrent clients send one query kind for a
//! fixed time; prints one JSON line per (kind, concurrency) with QPS and latency percentiles.
//!
//!   mmsearch-load --server http://127.0.0.1:50051 --kind text --concurrency 1,8,32,128 --seconds 10
//!   mmsearch-load --kind vector --space shared --dim 384 ...
//!   mmsearch-load --kind image --file photo.jpg ...      mmsearch-load --kind voice --file query.wav ...
//!
//! Loopback only by intent: it is a measurement tool for a server you run yourself.

use clap::Parser;
use mmsearch::pb;
use mmsearch_tools::stats::percentile;
use pb::search_request::Query;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    conn: mmsearch::client::ClientOptions,
    /// vector | text | image | voice
    #[arg(long)]
    kind: String,
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    concurrency: Vec<usize>,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 10)]
    top_k: u32,
    /// Photo or WAV for image / voice queries.
    #[arg(long)]
    file: Option<std::path::PathBuf>,
    /// For vector queries.
    #[arg(long, default_value = "shared")]
    space: String,
    #[arg(long, default_value_t = 384)]
    dim: usize,
}

const TEXTS: [&str; 8] = [
    "camera on a tripod",
    "wireless mouse",
    "running shoes",
    "leather sofa",
    "indoor plant",
    "gaming pc",
    "boxing gloves",
    "wooden stool",
];

fn query(args: &Args, i: usize, file: &Option<Vec<u8>>) -> anyhow::Result<Query> {
    Ok(match args.kind.as_str() {
        "text" => Query::Text(TEXTS[i % TEXTS.len()].to_string()),
        "image" => Query::Image(
            file.clone()
                .ok_or_else(|| anyhow::anyhow!("--file needed"))?,
        ),
        "voice" => Query::Audio(
            file.clone()
                .ok_or_else(|| anyhow::anyhow!("--file needed"))?,
        ),
        "vector" => {
            // Deterministic pseudo-random directions.
            let mut s = (i as u64 + 1).wrapping_mul(0x9E3779B97F4A7C15);
            let values = (0..args.dim)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s % 2000) as f32 / 1000.0 - 1.0
                })
                .collect();
            Query::Vector(pb::Vector {
                space: args.space.clone(),
                values,
            })
        }
        other => anyhow::bail!("unknown kind {other}"),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let file = match &args.file {
        Some(p) => Some(std::fs::read(p)?),
        None => None,
    };
    let connection = args.conn.connect().await?;
    for &c in &args.concurrency {
        let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for worker in 0..c {
            let mut client = connection.search();
            let requests: Vec<pb::SearchRequest> = (0..16)
                .map(|i| {
                    query(&args, worker * 16 + i, &file).map(|q| pb::SearchRequest {
                        query: Some(q),
                        top_k: args.top_k,
                        ..Default::default()
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            tasks.push(tokio::spawn(async move {
                let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, 0usize);
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    match client.search(requests[i % requests.len()].clone()).await {
                        Ok(_) => lat.push(t0.elapsed().as_secs_f64() * 1e3),
                        Err(_) => errors += 1,
                    }
                    i += 1;
                }
                (lat, errors)
            }));
        }
        let (mut all, mut errors) = (Vec::new(), 0);
        for t in tasks {
            let (l, e) = t.await?;
            all.extend(l);
            errors += e;
        }
        let secs = started.elapsed().as_secs_f64();
        all.sort_by(f64::total_cmp);
        let pct = |p: f64| percentile(&all, p);
        println!(
            "{}",
            serde_json::json!({
                "kind": args.kind, "concurrency": c, "requests": all.len(), "errors": errors,
                "qps": all.len() as f64 / secs, "p50_ms": pct(0.5), "p95_ms": pct(0.95), "p99_ms": pct(0.99)
            })
        );
    }
    Ok(())
}
