//! HYBRID vs VECTOR latency (#12) on the synthetic catalogue with its synthetic titles and
//! descriptions, in process with the real text model: n items written through the ingest
//! pipeline (vectors given, so no model work), folded into a generation (HNSW graph + lexical
//! index), then the same text queries — words of a random item's title, as a shopper types a
//! brand, colour and category — run as VECTOR and as HYBRID, interleaved, at concurrency 1.
//! Reports p50/p95 of the whole search and of its search stage (`Timing.search_us`: index,
//! lexical index and fusion, without the text encoder both modes share).

use crate::{summary, Catalogue};
use clap::Args;
use mmsearch::config::Config;
use mmsearch::engine::Engine;
use mmsearch::pipeline::{Query, SearchMode, SearchRequest};
use mmsearch::server::convert;
use mmsearch_index::synthetic::Clustered;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct HybridArgs {
    /// Server config (spaces, index, encoders); its `data_dir` is replaced by --data-dir.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Built here unless it already holds the catalogue (then reused).
    #[arg(long)]
    data_dir: PathBuf,
    #[command(flatten)]
    catalogue: Catalogue,
    #[arg(long, default_value_t = 500)]
    queries: usize,
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    #[arg(long, default_value_t = 10)]
    top_k: u32,
}

pub async fn run(args: HybridArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?.engine();
    config.data_dir = args.data_dir.clone();
    config.index.max_fresh = usize::MAX; // one rebuild, at the end of the load
    let engine = Engine::start(config).await?;
    let c = &args.catalogue;
    let have = engine.collection().stats().items as u64;
    if have < c.n {
        let started = Instant::now();
        let mut gen = Clustered::new(c.dim, c.clusters, c.seed);
        for chunk in (have..c.n).collect::<Vec<_>>().chunks(5_000) {
            let items = chunk
                .iter()
                .map(|&r| convert::new_item(crate::ingest::item(&mut gen, c, r)))
                .collect();
            let out = engine.ingester().write_group(items).await?;
            anyhow::ensure!(
                out.rejected.is_empty(),
                "rejected: {:?}",
                out.rejected.first()
            );
        }
        let ingest_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut rx = engine.collection().rebuild();
        loop {
            let p = rx.borrow_and_update().clone();
            match p.phase {
                mmsearch::collection::RebuildPhase::Done => break,
                mmsearch::collection::RebuildPhase::Failed => {
                    anyhow::bail!("rebuild failed: {:?}", p.error)
                }
                _ => {}
            }
            rx.changed().await?;
        }
        println!(
            "{}",
            serde_json::json!({"measure": "hybrid_load", "items": c.n, "ingest_s": ingest_s, "rebuild_s": started.elapsed().as_secs_f64()})
        );
    }
    let mut gen = Clustered::new(c.dim, c.clusters, c.seed);
    let texts: Vec<String> = (0..args.queries + args.warmup)
        .map(|i| {
            let row = (i as u64).wrapping_mul(2_654_435_761) % c.n;
            let title = crate::ingest::item(&mut gen, c, row).title;
            title.split(' ').take(3).collect::<Vec<_>>().join(" ") // "brand-123 red shoes"
        })
        .collect();
    let mut total = [Vec::new(), Vec::new()];
    let mut stage = [Vec::new(), Vec::new()];
    let started = Instant::now();
    for (i, text) in texts.iter().enumerate() {
        for (m, mode) in [SearchMode::Vector, SearchMode::Hybrid]
            .into_iter()
            .enumerate()
        {
            let req = SearchRequest {
                mode: Some(mode),
                ..SearchRequest::new(Query::Text(text.clone()), args.top_k)
            };
            let t = Instant::now();
            let r = engine.searcher().search(req).await?;
            if i >= args.warmup {
                total[m].push(t.elapsed().as_secs_f64() * 1e3);
                stage[m].push(r.timing.search_us as f64 / 1e3);
            }
        }
    }
    let wall = started.elapsed().as_secs_f64() / 2.0;
    let p50 = |v: &Vec<f64>| {
        summary(v.clone(), wall)["p50_ms"]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    println!(
        "{}",
        serde_json::json!({
            "measure": "hybrid_vs_vector", "items": c.n, "queries": args.queries, "top_k": args.top_k,
            "vector_total": summary(total[0].clone(), wall), "hybrid_total": summary(total[1].clone(), wall),
            "vector_search_stage": summary(stage[0].clone(), wall), "hybrid_search_stage": summary(stage[1].clone(), wall),
            "p50_ratio_total": p50(&total[1]) / p50(&total[0]),
            "p50_ratio_search_stage": p50(&stage[1]) / p50(&stage[0]),
        })
    );
    Ok(())
}
