//! Client commands: ingest a catalogue, search, admin.

use super::{catalog, AdminArgs, AdminCommand, IngestArgs, SearchArgs};
use crate::pb;
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::BufRead;

pub async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.catalog)
        .with_context(|| format!("opening {}", args.catalog.display()))?;
    let base_dir = args
        .catalog
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()?;
    let mut client = args.addr.connect().await?.ingest();

    let bar = ProgressBar::new(lines.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} lines  {per_sec}  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut accepted = 0u64;
    let mut rejected: Vec<(usize, String, String)> = Vec::new();
    let mut batch: Vec<(usize, pb::Item)> = Vec::new();
    let started = std::time::Instant::now();
    let numbered = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let mut pending = numbered.peekable();
    while pending.peek().is_some() {
        batch.clear();
        while batch.len() < args.batch.max(1) {
            let Some((n, line)) = pending.next() else {
                break;
            };
            match catalog::parse_line(line, &base_dir) {
                Ok(item) => batch.push((n + 1, item)),
                Err(reason) => {
                    rejected.push((n + 1, String::new(), reason));
                    bar.inc(1);
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let line_numbers: Vec<usize> = batch.iter().map(|(n, _)| *n).collect();
        let requests: Vec<pb::UpsertRequest> = batch
            .drain(..)
            .map(|(_, item)| pb::UpsertRequest { item: Some(item) })
            .collect();
        let count = requests.len() as u64;
        let summary = client
            .upsert(tokio_stream::iter(requests))
            .await
            .context("upsert stream failed")?
            .into_inner();
        accepted += summary.accepted;
        for r in summary.rejected {
            let line = line_numbers.get(r.index as usize).copied().unwrap_or(0);
            rejected.push((line, r.id, r.reason));
        }
        bar.inc(count);
        bar.set_message(format!("{accepted} accepted, {} rejected", rejected.len()));
    }
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingested {accepted} items in {secs:.1}s ({:.0} items/s); {} rejected",
        accepted as f64 / secs.max(1e-9),
        rejected.len()
    );
    rejected.sort();
    for (line, id, reason) in &rejected {
        println!("  line {line} {id}: {reason}");
    }
    Ok(())
}

fn parse_vector(s: &str) -> anyhow::Result<Vec<f32>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse::<f32>()
                .with_context(|| format!("bad vector value {x:?}"))
        })
        .collect()
}

pub async fn search(args: SearchArgs) -> anyhow::Result<()> {
    use pb::search_request::Query;
    let query = if let Some(t) = args.text.clone() {
        Some(Query::Text(t))
    } else if let Some(p) = &args.image {
        Some(Query::Image(
            std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        ))
    } else if let Some(p) = &args.voice {
        Some(Query::Audio(
            std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        ))
    } else if let Some(p) = &args.video {
        Some(Query::Video(
            std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        ))
    } else if let Some(id) = args.item.clone() {
        Some(Query::ItemId(id))
    } else if let Some(v) = &args.vector {
        Some(Query::Vector(pb::Vector {
            space: args.space.clone(),
            values: parse_vector(v)?,
        }))
    } else if args.sort.is_some()
        || !args.category.is_empty()
        || args.price_min.is_some()
        || args.price_max.is_some()
        || !args.attributes.is_empty()
    {
        None // browse
    } else {
        bail!("give one of --text, --image, --voice, --video, --item, --vector, or browse with a filter or --sort");
    };
    let mode = match args.mode.as_deref() {
        Some("vector") => pb::SearchMode::Vector,
        Some("lexical") => pb::SearchMode::Lexical,
        Some("hybrid") => pb::SearchMode::Hybrid,
        _ => pb::SearchMode::Unspecified,
    };
    let fusion = match args.fusion.as_deref() {
        Some("rrf") => pb::FusionMethod::Rrf,
        Some("convex") => pb::FusionMethod::Convex,
        _ => pb::FusionMethod::Unspecified,
    };
    let sort = match args.sort.as_deref() {
        Some("newest") => pb::SortBy::Newest,
        Some("price-asc") => pb::SortBy::PriceAsc,
        Some("price-desc") => pb::SortBy::PriceDesc,
        _ => pb::SortBy::Unspecified,
    };
    let mut attributes = std::collections::HashMap::new();
    for kv in &args.attributes {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--attr {kv:?} is not key=value"))?;
        attributes.insert(k.to_string(), v.to_string());
    }
    let request = pb::SearchRequest {
        query,
        top_k: args.top_k,
        offset: args.offset,
        filter: Some(pb::Filter {
            categories: args.category.clone(),
            price_min: args.price_min,
            price_max: args.price_max,
            attributes,
        }),
        min_score: 0.0,
        space: args.space.clone(),
        ef: 0,
        explain: args.explain,
        user_id: args.user.clone().unwrap_or_default(),
        personalization: if args.user.is_some() {
            args.personalization
        } else {
            0.0
        },
        mode: mode as i32,
        fusion: fusion as i32,
        lexical_weight: args.lexical_weight,
        sort: sort as i32,
        facets: false,
        facet_candidates: 0,
        speech_language: args.language.clone().unwrap_or_default(),
    };
    let mut client = args.addr.connect().await?.search();
    let resp = client
        .search(request)
        .await
        .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    if args.json {
        let hits: Vec<serde_json::Value> = resp
            .hits
            .iter()
            .map(|h| serde_json::json!({"id": h.id, "score": h.score, "title": h.item.as_ref().map(|i| i.title.clone()), "snippet": h.snippet}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"transcript": resp.transcript, "hits": hits, "exact": resp.exact, "total": resp.total})
        );
        return Ok(());
    }
    if !resp.transcript.is_empty() {
        println!("transcript: {}", resp.transcript);
    }
    if let Some(total) = resp.total {
        println!("{total} matching items");
    }
    for (rank, h) in resp.hits.iter().enumerate() {
        let (title, price, category) = h
            .item
            .as_ref()
            .map_or((String::new(), 0.0, String::new()), |i| {
                (i.title.clone(), i.price, i.category.clone())
            });
        println!(
            "{:>3}. {:.4}  {:<24} {:<40} {:>9.2}  {}",
            rank + 1 + args.offset as usize,
            h.score,
            h.id,
            title,
            price,
            category
        );
        if let Some(e) = &h.explanation {
            let parts: Vec<String> = e
                .spaces
                .iter()
                .map(|p| {
                    let rank = if p.rank == 0 {
                        "absent, floor".to_string()
                    } else {
                        format!("rank {}", p.rank)
                    };
                    format!(
                        "{} ({}) {:.4} × {:.2}, {rank}",
                        p.space, p.role, p.score, p.weight
                    )
                })
                .collect();
            println!("       plan {}: {}", e.plan, parts.join("; "));
            if let Some(v) = &e.video {
                println!(
                    "       video {:.1} s: {} frames × {:.2}, speech × {:.2}",
                    v.seconds, v.frames, v.frame_weight, v.speech_weight
                );
            }
            if !e.parts.is_empty() {
                let terms: Vec<String> = e
                    .parts
                    .iter()
                    .map(|p| {
                        format!(
                            "{} {:.4} × {:.2} = {:.4}",
                            p.name, p.value, p.weight, p.contribution
                        )
                    })
                    .collect();
                println!("       score = {:.4} + {}", e.offset, terms.join(" + "));
            }
            if let Some(l) = &e.lexical {
                let rank = if l.rank == 0 {
                    "absent".to_string()
                } else {
                    format!("rank {}", l.rank)
                };
                println!(
                    "       lexical bm25 {:.3}, {rank}, adds {:.4}; vector adds {:.4}  {}",
                    l.bm25, l.contribution, e.vector_contribution, e.fusion
                );
            }
        }
        if !h.snippet.is_empty() {
            // The snippet marks matches with <b>…</b> for HTML; a terminal gets bold.
            let shown = h
                .snippet
                .replace("<b>", "\x1b[1m")
                .replace("</b>", "\x1b[0m")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&");
            println!("       {shown}");
        }
    }
    if let Some(t) = resp.timing {
        println!(
            "encode {} µs, search {} µs, hydrate {} µs",
            t.encode_us, t.search_us, t.hydrate_us
        );
    }
    Ok(())
}

pub async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    let mut client = args.addr.connect().await?.admin();
    match args.command {
        AdminCommand::Status => {
            let s = client
                .status(pb::StatusRequest {})
                .await
                .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?
                .into_inner();
            println!(
                "items {}  generation {}  on disk {:?}  rebuilding {}  uptime {}s  last version {}",
                s.items,
                s.generation,
                s.generations_on_disk,
                s.rebuilding,
                s.uptime_seconds,
                s.last_version
            );
            for sp in s.spaces {
                println!(
                    "space {:<8} role {:<6} dim {:<5} {:<7} base {:<8} fresh {:<8} tombstones {:<6} layers {:?}",
                    sp.name, sp.role, sp.dim, sp.metric, sp.base_vectors, sp.fresh_vectors, sp.tombstones, sp.layer_counts
                );
            }
            for m in s.models {
                println!(
                    "model {:<28} {:<16} {:<5} dim {}",
                    m.id, m.kind, m.provider, m.dim
                );
            }
            println!(
                "recommendation model version {}  trained at {} (unix)  interactions {}",
                s.model_version, s.model_trained_at, s.interactions
            );
        }
        AdminCommand::Rebuild => {
            let mut stream = client
                .rebuild(pb::RebuildRequest {})
                .await
                .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?
                .into_inner();
            let started = std::time::Instant::now();
            while let Some(p) = stream
                .message()
                .await
                .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?
            {
                println!(
                    "{:<9} {:>8}/{:<8} space {:<8} eta {:.1}s  generation {}",
                    p.phase, p.done, p.total, p.space, p.eta_seconds, p.generation
                );
            }
            println!(
                "rebuild finished in {:.1}s",
                started.elapsed().as_secs_f64()
            );
        }
        AdminCommand::Train | AdminCommand::DeleteUser { .. } | AdminCommand::ExportUser { .. } => {
            super::recommend::admin(client, args.command).await?;
        }
        AdminCommand::Snapshot { name } => {
            // An empty name asks the server to generate one.
            let request = pb::SnapshotRequest {
                name: name.unwrap_or_default(),
                ..Default::default()
            };
            let s = client
                .snapshot(request)
                .await
                .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?
                .into_inner();
            println!(
                "snapshot {} at {} (on the server): version {}  generation {} (covers version {})  {} files, {} bytes ({} hard-linked)  {:.2}s",
                s.name, s.directory, s.last_version, s.generation, s.generation_version, s.files, s.bytes, s.linked_bytes, s.seconds
            );
            if !s.model_ids.is_empty() {
                println!("models: {}", s.model_ids.join(", "));
            }
        }
        // `run` handles it offline before a connection is made.
        AdminCommand::Reembed { .. } => {
            anyhow::bail!("reembed runs offline on the data directory, not against a server")
        }
    }
    Ok(())
}
