//! Retrieval quality of mmsearch on real data (issue #5, part 1), over an embedded engine built
//! from the server's own collection, ingest and search code.
//!
//!   deploy/eval/fetch_eval.py                                   # data, cached in ~/.cache/mmsearch/eval
//!   mmsearch-eval --out eval.json                               # full profile; table on stdout
//!   mmsearch-eval --profile ci --write-baseline tools/tests/data/eval_baseline.json
//!   mmsearch-eval --profile ci --check-baseline tools/tests/data/eval_baseline.json
//!
//! Search modes (#12): VECTOR vs LEXICAL vs HYBRID on any catalogue and query sets:
//!
//!   mmsearch-eval --catalog ~/.cache/mmsearch/demo/catalog.jsonl --queries names \
//!       --queries benches/eval/queries/vendure_paraphrases.json \
//!       --queries benches/eval/queries/vendure_exact_tokens.json --modes vector,lexical,rrf,convex
//!
//! `--config` takes the server's TOML (spaces, fusion weights, index, encoders), so a config
//! change can be measured before it is deployed.

use clap::Parser;
use mmsearch::config::Config;
use mmsearch::encode::Encoders;
use mmsearch_tools::eval::report::{Baseline, Report};
use mmsearch_tools::eval::{data::DataDir, EvalOptions, Set};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    about = "Retrieval quality (R@k, MRR, zero-shot accuracy, P@10, voice) on Vendure, Tux Paint, Fashion-MNIST, KTuberling"
)]
struct Args {
    /// `full` (everything) or `ci` (what tools/tests/eval_quality.rs runs).
    #[arg(long, default_value = "full")]
    profile: String,
    /// Comma-separated subset of vendure,tuxpaint,fashion-mnist (voice runs with vendure and tuxpaint).
    #[arg(long, value_delimiter = ',')]
    sets: Vec<String>,
    /// Fashion-MNIST gallery size for the full profile (first n of the 10,000 test images).
    #[arg(long, default_value_t = 10_000)]
    fmnist: usize,
    /// Fashion-MNIST image→image queries (default: every gallery image).
    #[arg(long)]
    fmnist_queries: Option<usize>,
    /// Query the mutable layer (exact scan) instead of rebuilding into an HNSW generation first.
    #[arg(long)]
    no_rebuild: bool,
    /// Server config (TOML) for spaces, fusion, index and encoders.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Model directory (default $MMSEARCH_MODELS or ~/.cache/mmsearch/models).
    #[arg(long)]
    models: Option<PathBuf>,
    /// Evaluation data (default $MMSEARCH_EVAL_DATA or ~/.cache/mmsearch/eval).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Record this run's metrics as the regression baseline.
    #[arg(long)]
    write_baseline: Option<PathBuf>,
    /// Fail (exit 1) if a metric dropped more than the baseline's tolerance below it.
    #[arg(long)]
    check_baseline: Option<PathBuf>,
    #[arg(long, default_value_t = 0.02)]
    tolerance: f64,
    /// espeak-ng query sets spoken on Vendure, overriding the profile's: voice_queries,
    /// vendure_paraphrases, vendure_zh (Mandarin; use with a multilingual speech_model).
    #[arg(long, value_delimiter = ',')]
    espeak: Vec<String>,
    /// The spoken language sent with every voice query (a Whisper code such as zh); default:
    /// the speech model detects it.
    #[arg(long)]
    speech_language: Option<String>,
    /// Compare search modes on this catalogue (the JSONL `mmsearch ingest` reads) instead of
    /// running the suites.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// With --catalog: query sets, `names` (each title) or JSON `[[target id, query], …]` (repeatable).
    #[arg(long)]
    queries: Vec<String>,
    /// With --catalog: vector, lexical, hybrid (server's fusion), rrf[:w], convex[:w].
    #[arg(long, value_delimiter = ',', default_value = "vector,lexical,hybrid")]
    modes: Vec<String>,
    /// With --catalog: write every query's unfused vector and lexical lists here (JSON lines).
    #[arg(long)]
    dump: Option<PathBuf>,
}

fn parse_sets(names: &[String]) -> anyhow::Result<Option<Vec<Set>>> {
    if names.is_empty() {
        return Ok(None);
    }
    names
        .iter()
        .map(|s| match s.as_str() {
            "vendure" => Ok(Set::Vendure),
            "tuxpaint" => Ok(Set::TuxPaint),
            "fashion-mnist" | "fmnist" => Ok(Set::FashionMnist),
            other => anyhow::bail!("unknown set {other:?} (vendure, tuxpaint, fashion-mnist)"),
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Some)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn,hnsw_rs=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let mut config = Config::load(args.config.as_deref())?;
    if let Some(m) = &args.models {
        config.encode.model_dir = m.clone();
    }
    let enc_cfg = config.encode.clone();
    let encoders = tokio::task::spawn_blocking(move || Encoders::load(&enc_cfg)).await??;
    if let Some(catalog) = &args.catalog {
        use mmsearch_tools::eval::modes;
        let items = modes::load_catalog(catalog)?;
        let sets = args
            .queries
            .iter()
            .map(|q| modes::load_queries(q, &items))
            .collect::<Result<Vec<_>, _>>()?;
        let variants = args
            .modes
            .iter()
            .map(|m| modes::Variant::parse(m))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        let (sections, table) = modes::run(
            &config,
            Arc::new(encoders),
            items,
            &sets,
            &variants,
            !args.no_rebuild,
            args.dump.as_deref(),
        )
        .await?;
        println!("{table}");
        if let Some(p) = &args.out {
            std::fs::write(p, serde_json::to_string_pretty(&sections)? + "\n")?;
        }
        return Ok(());
    }
    let data = DataDir::locate(args.data.as_deref())?;
    let mut opts = match args.profile.as_str() {
        "full" => EvalOptions::full(data, config.clone(), args.fmnist),
        "ci" => EvalOptions::ci(data, config.clone()),
        other => anyhow::bail!("unknown profile {other:?} (full, ci)"),
    };
    if let Some(sets) = parse_sets(&args.sets)? {
        opts.sets = sets;
    }
    if let Some(q) = args.fmnist_queries {
        opts.fmnist_queries = q;
    }
    opts.rebuild = !args.no_rebuild;
    if !args.espeak.is_empty() {
        opts.espeak_sets = args.espeak.clone();
    }
    opts.speech_language = args.speech_language.clone();

    let report: Report = mmsearch_tools::eval::run(&opts, Arc::new(encoders)).await?;
    println!("{}", report.table());
    if let Some(p) = &args.out {
        std::fs::write(p, serde_json::to_string_pretty(&report)? + "\n")?;
        eprintln!("report written to {}", p.display());
    }
    if let Some(p) = &args.write_baseline {
        let b = Baseline::from_report(&report, args.tolerance);
        std::fs::write(p, serde_json::to_string_pretty(&b)? + "\n")?;
        eprintln!(
            "baseline ({} metrics) written to {}",
            b.metrics.len(),
            p.display()
        );
    }
    if let Some(p) = &args.check_baseline {
        let b: Baseline = serde_json::from_str(&std::fs::read_to_string(p)?)?;
        let bad = b.regressions(&report);
        if !bad.is_empty() {
            eprintln!(
                "{} regression(s) against {}:\n  {}",
                bad.len(),
                p.display(),
                bad.join("\n  ")
            );
            std::process::exit(1);
        }
        eprintln!("no metric below {} − {}", p.display(), b.tolerance);
    }
    Ok(())
}
