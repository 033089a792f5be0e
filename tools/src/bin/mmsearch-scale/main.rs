//! Scale measurements for issue #5 §3 over a real server and its data directory:
//!
//!   mmsearch-scale ingest  --server URL --n 1000000     stream N synthetic clustered items
//!   mmsearch-scale rebuild --server URL --pid PID       rebuild, phase times, server memory
//!   mmsearch-scale measure --config C --data-dir D --server-bin B
//!       the same queries (concurrency 1) through the index alone, the collection, the
//!       in-process search pipeline, then a cold-started `mmsearch serve` over gRPC: time to
//!       the first answer, RSS, first-query vs steady latency, and the gRPC overhead.
//!
//!   mmsearch-scale hybrid --data-dir D --n 100000
//!       HYBRID vs VECTOR latency with the text model, in process (#12).
//!
//!   mmsearch-scale recommend --server URL --n 100000 --users 20000
//!       synthetic shoppers' interactions, Train, RecommendForUser latency over gRPC (#11).
//!
//! Prints one JSON object per measurement on stdout; `benches/run_scale.sh` drives it.

mod hybrid;
mod ingest;
mod measure;
mod rebuild;
mod recommend;

use clap::{Args, Parser, Subcommand};
use mmsearch_tools::stats::percentile;

#[derive(Parser, Debug)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Ingest(ingest::IngestArgs),
    Rebuild(rebuild::RebuildArgs),
    Measure(measure::MeasureArgs),
    Hybrid(hybrid::HybridArgs),
    Recommend(recommend::RecommendArgs),
}

/// The synthetic catalogue: row `i` is the same in every process (see `mmsearch_index::synthetic`).
#[derive(Args, Debug, Clone)]
pub struct Catalogue {
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    #[arg(long, default_value_t = 1000)]
    pub clusters: usize,
    /// Gaussian noise per coordinate around a blob centre (before normalising).
    #[arg(long, default_value_t = 0.04)]
    pub spread: f32,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Items in the catalogue (queries are drawn near rows below this).
    #[arg(long, default_value_t = 1_000_000)]
    pub n: u64,
    /// Vector space the items and queries use.
    #[arg(long, default_value = "shared")]
    pub space: String,
}

/// Latency summary in milliseconds.
pub fn summary(mut ms: Vec<f64>, wall_s: f64) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    let mean = if ms.is_empty() {
        0.0
    } else {
        ms.iter().sum::<f64>() / ms.len() as f64
    };
    serde_json::json!({
        "n": ms.len(),
        "qps": if wall_s > 0.0 { ms.len() as f64 / wall_s } else { 0.0 },
        "mean_ms": mean,
        "p50_ms": percentile(&ms, 0.5),
        "p95_ms": percentile(&ms, 0.95),
        "p99_ms": percentile(&ms, 0.99),
        "max_ms": ms.last().copied().unwrap_or(0.0),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Ingest(a) => ingest::run(a).await,
        Command::Rebuild(a) => rebuild::run(a).await,
        Command::Measure(a) => measure::run(a).await,
        Command::Hybrid(a) => hybrid::run(a).await,
        Command::Recommend(a) => recommend::run(a).await,
    }
}
