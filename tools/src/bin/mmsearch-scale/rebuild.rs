//! Runs `AdminService/Rebuild`, timing each phase and sampling the server's resident memory.

use clap::Args;
use mmsearch::client::ClientOptions;
use mmsearch::pb;
use mmsearch_tools::stats::proc_memory_mb;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct RebuildArgs {
    #[command(flatten)]
    conn: ClientOptions,
    /// Server process id, for memory samples (VmRSS every 0.5 s, VmHWM at the end).
    #[arg(long)]
    pid: Option<u32>,
}

pub async fn run(args: RebuildArgs) -> anyhow::Result<()> {
    let connection = args.conn.connect().await?;
    let rss_before = args.pid.and_then(|p| proc_memory_mb(p, "VmRSS"));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = args.pid.map(|pid| {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak = 0.0f64;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(proc_memory_mb(pid, "VmRSS").unwrap_or(0.0));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            peak
        })
    });

    let started = Instant::now();
    let mut stream = connection
        .admin()
        .rebuild(pb::RebuildRequest {})
        .await?
        .into_inner();
    let mut phases: Vec<(String, f64)> = Vec::new();
    let mut last_report = Instant::now();
    let mut last = None;
    while let Some(p) = stream.message().await? {
        let t = started.elapsed().as_secs_f64();
        if phases.last().is_none_or(|(name, _)| *name != p.phase) {
            eprintln!("{t:8.1}s  {}", p.phase);
            phases.push((p.phase.clone(), t));
        } else if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "{t:8.1}s  {} {}/{} eta {:.0}s",
                p.phase, p.done, p.total, p.eta_seconds
            );
            last_report = Instant::now();
        }
        last = Some(p);
    }
    let total = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let peak_sampled = match sampler {
        Some(s) => Some(s.await?),
        None => None,
    };
    let last = last.ok_or_else(|| anyhow::anyhow!("the rebuild stream ended without progress"))?;
    anyhow::ensure!(
        last.phase == "done",
        "rebuild ended in phase {:?}",
        last.phase
    );
    // Seconds spent in each phase: from its first report to the next phase's.
    let mut per_phase = serde_json::Map::new();
    for (i, (name, t)) in phases.iter().enumerate() {
        let end = phases.get(i + 1).map_or(total, |(_, next)| *next);
        per_phase.insert(name.clone(), serde_json::json!(end - t));
    }
    println!(
        "{}",
        serde_json::json!({
            "measure": "rebuild", "vectors": last.total, "generation": last.generation, "seconds": total,
            "phase_seconds": per_phase,
            "server_rss_mb_before": rss_before,
            "server_rss_mb_peak_sampled": peak_sampled,
            "server_rss_mb_after": args.pid.and_then(|p| proc_memory_mb(p, "VmRSS")),
            "server_vmhwm_mb": args.pid.and_then(|p| proc_memory_mb(p, "VmHWM")),
        })
    );
    Ok(())
}
