//! Soak test for a running mmsearch server (loopback by intent): for a bounded time, mixed
//! concurrent searches, streamed upserts, deletes, Gets and admin rebuilds, with a checker that
//! holds the server to every write it acknowledged. Samples the server's RSS into a CSV and
//! prints a JSON summary; exits 1 if an acknowledged write was lost or a request failed
//! unexpectedly.
//!
//!   mmsearch-soak --server http://127.0.0.1:50051 --duration 30m --concurrency 16 --csv soak.csv
//!
//! `--state FILE` carries the model of acknowledged writes across runs: a run that finds the
//! file first verifies every recorded write (e.g. after a server restart), then continues.

mod model;
mod stats;
mod workload;

use clap::Parser;
use mmsearch::pb;
use mmsearch_tools::net::auth_channel;
use model::{Model, ModelData, SPACE};
use rand::rngs::StdRng;
use rand::SeedableRng;
use stats::{Csv, Stats};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use workload::{check, Ctx, Finding};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// How long to run the workload: 90s, 10m, 1h (a bare number is seconds).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Concurrent workload tasks (a quarter of them write, the rest search), plus one checker
    /// and one admin task.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Sent as `authorization: Bearer <key>` on every request.
    #[arg(long, env = "MMSEARCH_API_KEY")]
    api_key: Option<String>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Server process for RSS samples; default: the only `mmsearch serve` process, if one.
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long, default_value = "soak.csv")]
    csv: PathBuf,
    #[arg(long, default_value_t = 10.0)]
    sample_every: f64,
    /// Admin rebuild interval in seconds (0: none).
    #[arg(long, default_value_t = 60.0)]
    rebuild_every: f64,
    /// Ids the writers may create in all; beyond it they update and delete existing ones.
    #[arg(long, default_value_t = 20_000)]
    max_ids: usize,
    /// Beam width for self-queries.
    #[arg(long, default_value_t = 128)]
    ef: u32,
    /// Never send text-only items or text queries, even when the server has models.
    #[arg(long)]
    no_text: bool,
    /// Model of acknowledged writes: verified and continued if present, written at the end.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Write the summary JSON here as well as to stdout.
    #[arg(long)]
    summary: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(s.trim().len()),
    );
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct State {
    started_unix: f64,
    seed: u64,
    model: ModelData,
    phases: Vec<serde_json::Value>,
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut state: State = match &args.state {
        Some(p) if p.exists() => serde_json::from_slice(&std::fs::read(p)?)?,
        _ => State {
            started_unix: unix_now(),
            seed: args.seed,
            ..Default::default()
        },
    };
    let resumed = !state.phases.is_empty();
    let phase = state.phases.len() + 1;
    let channel = auth_channel(&args.server, args.api_key.as_deref()).await?;
    let status = pb::admin_service_client::AdminServiceClient::new(channel.clone())
        .status(pb::StatusRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("Status: {:?} {}", s.code(), s.message()))?
        .into_inner();
    let dim = status
        .spaces
        .iter()
        .find(|s| s.name == SPACE)
        .map(|s| s.dim as usize)
        .ok_or_else(|| anyhow::anyhow!("the server has no {SPACE:?} space"))?;
    let text = !status.models.is_empty() && !args.no_text;
    let pid = args.server_pid.or_else(stats::find_server_pid);
    eprintln!(
        "soak phase {phase}: {} for {:?}, concurrency {}, dim {dim}, text {text}, server pid {pid:?}",
        args.server, args.duration, args.concurrency
    );

    let model = Arc::new(Model::new(
        state.seed,
        dim,
        std::mem::take(&mut state.model),
    ));
    let stats = Arc::new(Stats::default());
    let mut csv = Csv::open(&args.csv)?;
    let mut rss = Vec::new();
    let sample = |csv: &mut Csv, rss: &mut Vec<(f64, f64)>, status: Option<(u64, u64, u64)>| {
        let r = pid.and_then(stats::rss_mb);
        if let Some(r) = r {
            rss.push((unix_now() - state.started_unix, r));
        }
        csv.row(unix_now() - state.started_unix, phase, r, status, &stats)
    };
    sample(&mut csv, &mut rss, Some(status_triple(&status)))?;

    let restart = if resumed {
        eprintln!("verifying every acknowledged write of the previous phases");
        let ctx = Ctx::new(
            channel.clone(),
            model.clone(),
            stats.clone(),
            Instant::now(),
            text,
            args.ef,
        );
        Some(verify_all(&ctx, "restart_verify").await)
    } else {
        None
    };

    let started = Instant::now();
    let deadline = started + args.duration;
    let ctx = Ctx::new(
        channel.clone(),
        model.clone(),
        stats.clone(),
        deadline,
        text,
        args.ef,
    );
    let writers = (args.concurrency / 4).max(1);
    let per_writer = args.max_ids.div_ceil(writers);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let rng = StdRng::seed_from_u64(state.seed ^ (phase as u64) << 32 ^ w as u64);
        tasks.push(tokio::spawn(workload::writer(
            ctx.clone(),
            w,
            per_writer,
            rng,
        )));
    }
    for s in 0..args.concurrency.saturating_sub(writers).max(1) {
        let rng = StdRng::seed_from_u64(state.seed ^ (phase as u64) << 32 ^ (1000 + s as u64));
        tasks.push(tokio::spawn(workload::searcher(ctx.clone(), rng)));
    }
    tasks.push(tokio::spawn(workload::checker(
        ctx.clone(),
        StdRng::seed_from_u64(state.seed ^ 0xC4EC),
    )));
    if args.rebuild_every > 0.0 {
        tasks.push(tokio::spawn(workload::rebuilder(
            ctx.clone(),
            Duration::from_secs_f64(args.rebuild_every),
        )));
    }

    let mut admin = ctx.admin.clone();
    let mut next_sample = Instant::now();
    while Instant::now() < deadline {
        next_sample += Duration::from_secs_f64(args.sample_every.max(0.5));
        tokio::time::sleep_until(next_sample.min(deadline).into()).await;
        let st = admin
            .status(pb::StatusRequest {})
            .await
            .ok()
            .map(|r| status_triple(&r.into_inner()));
        sample(&mut csv, &mut rss, st)?;
        let (ids, live) = model.counts();
        eprintln!(
            "t={:>6.0}s ids {ids} live {live} acked upserts {} deletes {} checks {} unexpected {} lost {}",
            started.elapsed().as_secs_f64(),
            Stats::get(&stats.acked_upserts),
            Stats::get(&stats.acked_deletes),
            Stats::get(&stats.checks_ok),
            stats.unexpected_total(),
            Stats::get(&stats.lost)
        );
    }
    for t in tasks {
        t.await?;
    }
    let workload_secs = started.elapsed().as_secs_f64();

    eprintln!("workload done; verifying every acknowledged write");
    let final_check = verify_all(&ctx, "final_verify").await;
    let st = admin
        .status(pb::StatusRequest {})
        .await
        .ok()
        .map(|r| status_triple(&r.into_inner()));
    sample(&mut csv, &mut rss, st)?;

    let (ids, live) = model.counts();
    let lost = Stats::get(&stats.lost);
    let resurrected = Stats::get(&stats.resurrected);
    let unexpected = stats.unexpected_total();
    let rss_at = |frac: f64| -> Option<f64> {
        let (t0, t1) = (rss.first()?.0, rss.last()?.0);
        let t = t0 + (t1 - t0) * frac;
        rss.iter()
            .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
            .map(|x| x.1)
    };
    let summary = serde_json::json!({
        "phase": phase,
        "server": args.server,
        "duration_s": (workload_secs * 10.0).round() / 10.0,
        "concurrency": args.concurrency,
        "writers": writers,
        "seed": state.seed,
        "text_workload": text,
        "requests": stats.kinds_json(),
        "acked_upserts": Stats::get(&stats.acked_upserts),
        "acked_deletes": Stats::get(&stats.acked_deletes),
        "ids_written_total": ids,
        "ids_live_at_end": live,
        "continuous_checks": {
            "ok": Stats::get(&stats.checks_ok),
            "raced_discarded": Stats::get(&stats.checks_raced),
        },
        "restart_verification": restart,
        "final_verification": final_check,
        "ann_self_query_misses": Stats::get(&stats.ann_misses),
        "lost_acked_writes": lost,
        "resurrected_deletes": resurrected,
        "unexpected_errors": unexpected,
        "unexpected_samples": stats.unexpected_samples(),
        "rss_mb": {
            "start": rss_at(0.0),
            "middle": rss_at(0.5),
            "end": rss_at(1.0),
            "max": rss.iter().map(|x| x.1).reduce(f64::max),
        },
        "previous_phases": state.phases,
    });
    let text_out = serde_json::to_string_pretty(&summary)?;
    println!("{text_out}");
    if let Some(p) = &args.summary {
        std::fs::write(p, &text_out)?;
    }
    if let Some(p) = &args.state {
        let mut phases = std::mem::take(&mut state.phases);
        let mut this = summary.clone();
        if let Some(o) = this.as_object_mut() {
            o.remove("previous_phases");
        }
        phases.push(this);
        let saved = State {
            started_unix: state.started_unix,
            seed: state.seed,
            model: serde_json::from_value(model.export())?,
            phases,
        };
        std::fs::write(p, serde_json::to_vec(&saved)?)?;
    }
    if lost > 0 || resurrected > 0 || unexpected > 0 {
        eprintln!("SOAK FAILED: {lost} lost acknowledged writes, {resurrected} resurrected deletes, {unexpected} unexpected errors");
        std::process::exit(1);
    }
    eprintln!("soak passed");
    Ok(())
}

fn status_triple(s: &pb::StatusResponse) -> (u64, u64, u64) {
    (
        s.items,
        s.generation,
        s.spaces.iter().map(|sp| sp.fresh_vectors).sum(),
    )
}

/// Checks every settled id (nothing is writing now), 8 at a time.
async fn verify_all(ctx: &Ctx, kind: &'static str) -> serde_json::Value {
    use futures::StreamExt;
    let t0 = Instant::now();
    let (all, unknown) = ctx.model.all_settled();
    let checked = all.len();
    let findings: Vec<Finding> = futures::stream::iter(all)
        .map(|s| {
            let mut c = ctx.clone();
            async move { check(&mut c, kind, &s, true).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let (mut lost, mut resurrected, mut misses, mut failed) = (0, 0, 0, 0);
    for f in &findings {
        workload::record(&ctx.stats, kind, f);
        lost += f.lost.is_some() as u64;
        resurrected += f.resurrected.is_some() as u64;
        misses += f.ann_miss as u64;
        failed += f.failed as u64;
    }
    serde_json::json!({
        "checked": checked,
        "unknown_skipped": unknown,
        "lost": lost,
        "resurrected": resurrected,
        "ann_self_query_misses": misses,
        "failed_requests": failed,
        "seconds": (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    })
}
