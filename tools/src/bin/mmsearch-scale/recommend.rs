//! Recommendation at scale over gRPC (#11): synthetic shoppers' behaviour streamed through
//! `RecommendService/RecordInteractions` (events/s), `AdminService/Train` (time, algorithm,
//! server memory), then `RecommendForUser` latency at concurrency 1 for shoppers with a
//! history and for shoppers without one (popularity).
//!
//! The catalogue is the one `mmsearch-scale ingest` streamed (same `--n`, `--clusters`): item
//! `row` lies in blob `row % clusters`. Each shopper prefers two blobs and, within a blob,
//! the lower rows (a skewed popularity), so the collaborative model has co-occurrence to learn
//! and the content vector has a direction to search.

use crate::{summary, Catalogue};
use clap::Args;
use mmsearch::client::ClientOptions;
use mmsearch::pb;
use mmsearch_tools::stats::proc_memory_mb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct RecommendArgs {
    #[command(flatten)]
    conn: ClientOptions,
    #[command(flatten)]
    catalogue: Catalogue,
    /// Synthetic shoppers.
    #[arg(long, default_value_t = 20_000)]
    users: u64,
    /// Interactions per shopper.
    #[arg(long, default_value_t = 25)]
    events_per_user: u64,
    /// Concurrent RecordInteractions streams.
    #[arg(long, default_value_t = 2)]
    streams: u64,
    /// Interactions per RecordInteractions call (one acknowledged summary each).
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Timed RecommendForUser calls (after `warmup` untimed ones).
    #[arg(long, default_value_t = 1_000)]
    requests: usize,
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    #[arg(long, default_value_t = 10)]
    top_k: u32,
    /// Skip recording and training (the data dir already holds them).
    #[arg(long)]
    skip_record: bool,
    /// Server process id, for memory samples.
    #[arg(long)]
    pid: Option<u32>,
}

const KINDS: [(pb::InteractionKind, f64); 4] = [
    (pb::InteractionKind::View, 0.6),
    (pb::InteractionKind::Click, 0.2),
    (pb::InteractionKind::Cart, 0.1),
    (pb::InteractionKind::Purchase, 0.1),
];

fn user_id(u: u64) -> String {
    format!("shopper-{u:07}")
}

/// Shopper `u`'s interactions, the same in every run.
fn history(u: u64, a: &RecommendArgs) -> Vec<pb::Interaction> {
    let c = &a.catalogue;
    let clusters = c.clusters.max(1) as u64;
    let per_cluster = (c.n / clusters).max(1);
    let mut rng = StdRng::seed_from_u64(c.seed ^ u.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let liked = [rng.random_range(0..clusters), rng.random_range(0..clusters)];
    // Hours apart per shopper, a minute apart per event: histories interleave in time.
    let start_ms = 1_700_000_000_000i64 + (u as i64 % 1_000) * 3_600_000;
    (0..a.events_per_user)
        .map(|e| {
            let blob = if rng.random::<f64>() < 0.7 {
                liked[0]
            } else {
                liked[1]
            };
            // u² skews towards the blob's first rows: a few popular items per blob.
            let k =
                ((rng.random::<f64>().powi(2) * per_cluster as f64) as u64).min(per_cluster - 1);
            let row = (blob + k * clusters).min(c.n - 1);
            let mut p = rng.random::<f64>();
            let kind = KINDS
                .iter()
                .find(|(_, share)| {
                    p -= share;
                    p < 0.0
                })
                .map_or(pb::InteractionKind::View, |(k, _)| *k);
            pb::Interaction {
                user_id: user_id(u),
                item_id: crate::ingest::item_id(row),
                kind: kind as i32,
                dwell_ms: 0,
                timestamp_ms: start_ms + e as i64 * 60_000,
                idempotency_key: e.to_string(),
            }
        })
        .collect()
}

async fn record(a: &RecommendArgs, conn: &mmsearch::client::Connection) -> anyhow::Result<()> {
    let started = Instant::now();
    let streams = a.streams.max(1);
    let mut tasks = Vec::new();
    for s in 0..streams {
        let mut client = conn.recommend();
        let events: Vec<pb::Interaction> = (0..a.users)
            .filter(|u| u % streams == s)
            .flat_map(|u| history(u, a))
            .collect();
        let batch = a.batch.max(1);
        tasks.push(tokio::spawn(async move {
            let (mut accepted, mut rejected, mut first_rejection) = (0u64, 0u64, None);
            for chunk in events.chunks(batch) {
                let summary = client
                    .record_interactions(tokio_stream::iter(chunk.to_vec()))
                    .await?
                    .into_inner();
                accepted += summary.accepted + summary.duplicates;
                rejected += summary.rejected.len() as u64;
                if first_rejection.is_none() {
                    first_rejection = summary.rejected.first().map(|r| format!("{r:?}"));
                }
            }
            anyhow::Ok((accepted, rejected, first_rejection))
        }));
    }
    let (mut accepted, mut rejected, mut first_rejection) = (0, 0, None);
    for t in tasks {
        let (acc, rej, first) = t.await??;
        accepted += acc;
        rejected += rej;
        first_rejection = first_rejection.or(first);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "measure": "record_interactions", "users": a.users, "events": accepted, "rejected": rejected,
            "first_rejection": first_rejection, "streams": streams, "per_call": a.batch,
            "seconds": secs, "events_per_s": accepted as f64 / secs,
            "server_rss_mb": a.pid.and_then(|p| proc_memory_mb(p, "VmRSS")),
        })
    );
    anyhow::ensure!(rejected == 0, "interactions were rejected");
    Ok(())
}

async fn train(a: &RecommendArgs, conn: &mmsearch::client::Connection) -> anyhow::Result<()> {
    let rss_before = a.pid.and_then(|p| proc_memory_mb(p, "VmRSS"));
    let started = Instant::now();
    let mut stream = conn.admin().train(pb::TrainRequest {}).await?.into_inner();
    let mut last = None;
    while let Some(p) = stream.message().await? {
        last = Some(p);
    }
    let last = last.ok_or_else(|| anyhow::anyhow!("the train stream ended without progress"))?;
    anyhow::ensure!(
        last.phase == "done",
        "train ended in phase {:?}",
        last.phase
    );
    println!(
        "{}",
        serde_json::json!({
            "measure": "train", "algorithm": last.algorithm, "interactions": last.interactions,
            "items": last.items, "users": last.users, "server_seconds": last.seconds,
            "seconds": started.elapsed().as_secs_f64(), "model_version": last.model_version,
            "server_rss_mb_before": rss_before,
            "server_rss_mb_after": a.pid.and_then(|p| proc_memory_mb(p, "VmRSS")),
            "server_vmhwm_mb": a.pid.and_then(|p| proc_memory_mb(p, "VmHWM")),
        })
    );
    Ok(())
}

/// `RecommendForUser` for `users` (warm-up first), one request at a time.
async fn latency(
    a: &RecommendArgs,
    conn: &mmsearch::client::Connection,
    label: &str,
    users: &[String],
) -> anyhow::Result<()> {
    let mut client = conn.recommend();
    let mut ms = Vec::with_capacity(users.len());
    let (mut empty, mut sources) = (0usize, std::collections::BTreeMap::<String, usize>::new());
    let started = Instant::now();
    for (i, user) in users.iter().enumerate() {
        let t = Instant::now();
        let response = client
            .recommend_for_user(pb::RecommendForUserRequest {
                user_id: user.clone(),
                top_k: a.top_k,
                ..Default::default()
            })
            .await?
            .into_inner();
        let elapsed = t.elapsed().as_secs_f64() * 1e3;
        if i < a.warmup {
            continue;
        }
        ms.push(elapsed);
        if response.hits.is_empty() {
            empty += 1;
        }
        for hit in &response.hits {
            for r in &hit.reasons {
                *sources.entry(r.source.clone()).or_default() += 1;
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let mut out = summary(ms, wall);
    out["measure"] = serde_json::json!("recommend_for_user");
    out["users"] = serde_json::json!(label);
    out["items"] = serde_json::json!(a.catalogue.n);
    out["top_k"] = serde_json::json!(a.top_k);
    out["empty_responses"] = serde_json::json!(empty);
    out["reasons_by_source"] = serde_json::json!(sources);
    out["server_rss_mb"] = serde_json::json!(a.pid.and_then(|p| proc_memory_mb(p, "VmRSS")));
    println!("{out}");
    anyhow::ensure!(empty == 0, "{empty} responses had no hits");
    Ok(())
}

pub async fn run(a: RecommendArgs) -> anyhow::Result<()> {
    let conn = a.conn.connect().await?;
    if !a.skip_record {
        record(&a, &conn).await?;
        train(&a, &conn).await?;
    }
    let mut rng = StdRng::seed_from_u64(a.catalogue.seed.wrapping_add(1));
    let n = a.warmup + a.requests;
    let known: Vec<String> = (0..n)
        .map(|_| user_id(rng.random_range(0..a.users.max(1))))
        .collect();
    latency(&a, &conn, "with_history", &known).await?;
    // Shoppers the server has never seen: the popularity path.
    let unknown: Vec<String> = (0..n).map(|i| format!("new-shopper-{i}")).collect();
    latency(&a, &conn, "without_history", &unknown).await?;
    Ok(())
}
