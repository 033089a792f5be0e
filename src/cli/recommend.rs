//! Client commands of recommendation: `events` (stream interactions), `recommend`, and the
//! admin ones (`train`, `delete-user`, `export-user`).

use super::{AdminCommand, ServerAddr};
use crate::client::AuthChannel;
use crate::pb;
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::BufRead;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Interactions, one JSON object per line: {"user_id", "item_id", "kind": "view" | "click" |
    /// "cart" | "purchase" | "dwell", "dwell_ms"?, "timestamp_ms"?, "idempotency_key"?}.
    pub file: PathBuf,
    /// Interactions per stream; each stream's summary acknowledges its interactions.
    #[arg(long, default_value_t = 2000)]
    pub batch: usize,
    #[command(flatten)]
    pub addr: ServerAddr,
}

#[derive(Args, Debug)]
pub struct RecommendArgs {
    /// Recommendations for this user ("for you").
    #[arg(long, conflicts_with_all = ["like", "dislike"])]
    pub user: Option<String>,
    /// Items like these (repeatable).
    #[arg(long)]
    pub like: Vec<String>,
    /// … and unlike these (repeatable).
    #[arg(long)]
    pub dislike: Vec<String>,
    /// average-vector, best-score or collaborative (with --like).
    #[arg(long, default_value = "average-vector")]
    pub strategy: String,
    /// Also recommend items the user already interacted with (buy again).
    #[arg(long)]
    pub include_seen: bool,
    #[arg(long, short = 'k', default_value_t = 10)]
    pub top_k: u32,
    #[arg(long)]
    pub category: Vec<String>,
    /// Print the raw response as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub addr: ServerAddr,
}

#[derive(serde::Deserialize)]
struct Line {
    user_id: String,
    item_id: String,
    kind: String,
    #[serde(default)]
    dwell_ms: u32,
    #[serde(default)]
    timestamp_ms: i64,
    #[serde(default)]
    idempotency_key: String,
}

fn parse(line: &str) -> Result<pb::Interaction, String> {
    let l: Line = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let kind = match l.kind.to_ascii_lowercase().as_str() {
        "view" => pb::InteractionKind::View,
        "click" => pb::InteractionKind::Click,
        "cart" => pb::InteractionKind::Cart,
        "purchase" => pb::InteractionKind::Purchase,
        "dwell" => pb::InteractionKind::Dwell,
        other => return Err(format!("unknown kind {other:?}")),
    };
    Ok(pb::Interaction {
        user_id: l.user_id,
        item_id: l.item_id,
        kind: kind as i32,
        dwell_ms: l.dwell_ms,
        timestamp_ms: l.timestamp_ms,
        idempotency_key: l.idempotency_key,
    })
}

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

pub async fn events(args: EventsArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()?;
    let mut client = args.addr.connect().await?.recommend();
    let bar = ProgressBar::new(lines.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} lines  {per_sec}  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    let mut rejected: Vec<(usize, String)> = Vec::new();
    let started = std::time::Instant::now();
    let numbered: Vec<(usize, &String)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    for chunk in numbered.chunks(args.batch.max(1)) {
        let mut batch = Vec::with_capacity(chunk.len());
        let mut line_numbers = Vec::with_capacity(chunk.len());
        for (n, line) in chunk {
            match parse(line) {
                Ok(i) => {
                    batch.push(i);
                    line_numbers.push(n + 1);
                }
                Err(reason) => rejected.push((n + 1, reason)),
            }
        }
        if !batch.is_empty() {
            let s = client
                .record_interactions(tokio_stream::iter(batch))
                .await
                .map_err(status)?
                .into_inner();
            accepted += s.accepted;
            duplicates += s.duplicates;
            for r in s.rejected {
                rejected.push((
                    line_numbers.get(r.index as usize).copied().unwrap_or(0),
                    r.reason,
                ));
            }
        }
        bar.inc(chunk.len() as u64);
        bar.set_message(format!("{accepted} accepted, {} rejected", rejected.len()));
    }
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "recorded {accepted} interactions ({duplicates} duplicates) in {secs:.1}s ({:.0}/s); {} rejected",
        accepted as f64 / secs.max(1e-9),
        rejected.len()
    );
    rejected.sort();
    for (line, reason) in &rejected {
        println!("  line {line}: {reason}");
    }
    Ok(())
}

pub async fn recommend(args: RecommendArgs) -> anyhow::Result<()> {
    let mut client = args.addr.connect().await?.recommend();
    let filter = (!args.category.is_empty()).then(|| pb::Filter {
        categories: args.category.clone(),
        ..Default::default()
    });
    let resp = if let Some(user) = &args.user {
        let req = pb::RecommendForUserRequest {
            user_id: user.clone(),
            top_k: args.top_k,
            filter,
            exclude_seen: Some(!args.include_seen),
            offset: 0,
        };
        client
            .recommend_for_user(req)
            .await
            .map_err(status)?
            .into_inner()
    } else {
        let strategy = match args.strategy.as_str() {
            "average-vector" => pb::RecommendStrategy::AverageVector,
            "best-score" => pb::RecommendStrategy::BestScore,
            "collaborative" => pb::RecommendStrategy::Collaborative,
            other => anyhow::bail!(
                "unknown strategy {other:?}: average-vector, best-score or collaborative"
            ),
        };
        let example = |id: &String| pb::Example {
            example: Some(pb::example::Example::ItemId(id.clone())),
            weight: None,
        };
        let req = pb::RecommendRequest {
            positive: args.like.iter().map(example).collect(),
            negative: args.dislike.iter().map(example).collect(),
            strategy: strategy as i32,
            filter,
            top_k: args.top_k,
            ..Default::default()
        };
        client.recommend(req).await.map_err(status)?.into_inner()
    };
    if args.json {
        let hits: Vec<serde_json::Value> = resp
            .hits
            .iter()
            .map(|h| {
                let reasons: Vec<serde_json::Value> = h
                    .reasons
                    .iter()
                    .map(|r| {
                        let because: Vec<serde_json::Value> =
                            r.because.iter().map(|c| serde_json::json!({"item_id": c.item_id, "share": c.share, "kind": c.kind})).collect();
                        serde_json::json!({"source": r.source, "contribution": r.contribution, "because": because})
                    })
                    .collect();
                serde_json::json!({"id": h.id, "score": h.score, "title": h.item.as_ref().map(|i| i.title.clone()), "reasons": reasons})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"model_version": resp.model_version, "hits": hits})
        );
        return Ok(());
    }
    for (rank, h) in resp.hits.iter().enumerate() {
        let title = h.item.as_ref().map_or(String::new(), |i| i.title.clone());
        println!("{:>3}. {:.4}  {:<24} {}", rank + 1, h.score, h.id, title);
        for r in &h.reasons {
            let because: Vec<String> = r
                .because
                .iter()
                .map(|c| {
                    if c.kind.is_empty() {
                        format!("{} {:.0}%", c.item_id, 100.0 * c.share)
                    } else {
                        format!("{} {} {:.0}%", c.kind, c.item_id, 100.0 * c.share)
                    }
                })
                .collect();
            let tail = if because.is_empty() {
                String::new()
            } else {
                format!(": because of {}", because.join(", "))
            };
            println!("       {} +{:.4}{tail}", r.source, r.contribution);
        }
    }
    println!("model version {}", resp.model_version);
    Ok(())
}

pub async fn admin(
    mut client: pb::admin_service_client::AdminServiceClient<AuthChannel>,
    command: AdminCommand,
) -> anyhow::Result<()> {
    match command {
        AdminCommand::Train => {
            let mut stream = client
                .train(pb::TrainRequest {})
                .await
                .map_err(status)?
                .into_inner();
            while let Some(p) = stream.message().await.map_err(status)? {
                println!(
                    "{:<9} {:>8}/{:<8} {:.1}s",
                    p.phase, p.done, p.total, p.seconds
                );
                if p.phase == "done" {
                    println!(
                        "model version {}: {} over {} items, {} users, {} interactions",
                        p.model_version, p.algorithm, p.items, p.users, p.interactions
                    );
                }
            }
        }
        AdminCommand::DeleteUser { user } => {
            let r = client
                .delete_user_data(pb::UserDataRequest { user_id: user })
                .await
                .map_err(status)?
                .into_inner();
            println!("erased {} interactions", r.deleted);
        }
        AdminCommand::ExportUser { user } => {
            let r = client
                .export_user_data(pb::UserDataRequest { user_id: user })
                .await
                .map_err(status)?
                .into_inner();
            for i in r.interactions {
                let kind = pb::InteractionKind::try_from(i.kind)
                    .map(|k| k.as_str_name().to_ascii_lowercase())
                    .unwrap_or_default();
                println!(
                    "{}",
                    serde_json::json!({"user_id": i.user_id, "item_id": i.item_id, "kind": kind, "dwell_ms": i.dwell_ms,
                        "timestamp_ms": i.timestamp_ms, "idempotency_key": i.idempotency_key})
                );
            }
        }
        _ => unreachable!("only recommendation commands come here"),
    }
    Ok(())
}
