//! Streams the synthetic catalogue through `IngestService/Upsert`, several streams at once,
//! as a batch indexer would; every item is acknowledged by its stream's summary.

use crate::Catalogue;
use clap::Args;
use mmsearch::client::ClientOptions;
use mmsearch::pb;
use mmsearch_index::synthetic::Clustered;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct IngestArgs {
    #[command(flatten)]
    conn: ClientOptions,
    #[command(flatten)]
    catalogue: Catalogue,
    /// First row to send (to resume or extend a catalogue).
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Concurrent Upsert streams; stream s sends the rows with row % streams == s.
    #[arg(long, default_value_t = 2)]
    streams: u64,
    /// Items per Upsert call (one acknowledged summary each).
    #[arg(long, default_value_t = 10_000)]
    batch: u64,
}

const CATEGORIES: [&str; 12] = [
    "shoes", "shirts", "jackets", "bags", "watches", "lamps", "chairs", "tables", "phones",
    "cameras", "toys", "plants",
];
const COLOURS: [&str; 9] = [
    "black", "white", "red", "blue", "green", "grey", "brown", "pink", "yellow",
];

/// Item `row` of the catalogue, with metadata shaped like a real product's (title,
/// description, category, price, attributes, photo URI) so store bytes per item are realistic.
pub fn item(gen: &mut Clustered, c: &Catalogue, row: u64) -> pb::Item {
    let category = CATEGORIES[(row % CATEGORIES.len() as u64) as usize];
    let colour = COLOURS[(row / 7 % COLOURS.len() as u64) as usize];
    let brand = format!("brand-{:03}", row.wrapping_mul(2654435761) % 400);
    pb::Item {
        id: item_id(row),
        title: format!("{brand} {colour} {category} model {row}"),
        description: format!(
            "A {colour} item from the {category} range by {brand}; synthetic catalogue row {row}."
        ),
        category: category.into(),
        price: (row.wrapping_mul(40503) % 50_000) as f64 / 100.0 + 0.99,
        attributes: [
            ("brand".to_string(), brand),
            ("colour".to_string(), colour.to_string()),
        ]
        .into(),
        image_uris: vec![format!("https://img.example.com/p/{row}.jpg")],
        vectors: vec![pb::Vector {
            space: c.space.clone(),
            values: gen.row(row, 0, c.spread),
        }],
        ..Default::default()
    }
}

pub fn item_id(row: u64) -> String {
    format!("sku-{row:08}")
}

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let connection = args.conn.connect().await?;
    let started = Instant::now();
    let end = args.start + args.catalogue.n;
    let mut streams = Vec::new();
    for s in 0..args.streams.max(1) {
        let mut client = connection.ingest();
        let c = args.catalogue.clone();
        let (start, step, batch) = (args.start, args.streams.max(1), args.batch.max(1));
        streams.push(tokio::spawn(async move {
            let mut gen = Clustered::new(c.dim, c.clusters, c.seed);
            let mut rows = (start..end).filter(move |r| r % step == s).peekable();
            let (mut accepted, mut rejected, mut calls) = (0u64, 0u64, 0u64);
            let mut first_rejection = None;
            while rows.peek().is_some() {
                let chunk: Vec<pb::UpsertRequest> = rows
                    .by_ref()
                    .take(batch as usize)
                    .map(|r| pb::UpsertRequest {
                        item: Some(item(&mut gen, &c, r)),
                    })
                    .collect();
                let summary = client.upsert(tokio_stream::iter(chunk)).await?.into_inner();
                accepted += summary.accepted;
                rejected += summary.rejected.len() as u64;
                if first_rejection.is_none() {
                    first_rejection = summary.rejected.first().map(|r| format!("{r:?}"));
                }
                calls += 1;
            }
            anyhow::Ok((accepted, rejected, calls, first_rejection))
        }));
    }
    let (mut accepted, mut rejected, mut calls, mut first_rejection) = (0, 0, 0, None);
    for s in streams {
        let (a, r, n, f) = s.await??;
        accepted += a;
        rejected += r;
        calls += n;
        first_rejection = first_rejection.or(f);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "measure": "ingest", "items": args.catalogue.n, "dim": args.catalogue.dim, "accepted": accepted,
            "rejected": rejected, "first_rejection": first_rejection, "streams": args.streams, "upsert_calls": calls,
            "seconds": secs, "items_per_s": accepted as f64 / secs,
        })
    );
    anyhow::ensure!(
        rejected == 0 && accepted == args.catalogue.n,
        "not every item was accepted"
    );
    Ok(())
}
