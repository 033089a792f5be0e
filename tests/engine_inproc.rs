//! The engine in process, without models and without starting a server: writes, searches,
//! filters, deletes, rebuilds and recovery through the same `Engine` value the server uses.
//! Vectors are synthetic, so nothing here needs `models/setup.sh`.

use mmsearch::engine::{Engine, EngineConfig};
use mmsearch::model::{FilterSpec, Item, NewItem};
use mmsearch::pipeline::{Query, SearchRequest, SpaceConfig, SpaceRole};
use mmsearch_index::Metric;
use std::path::Path;

const DIM: usize = 16;
const CATEGORIES: [&str; 4] = ["audio", "books", "shoes", "toys"];

/// Spaces with names no code knows: roles make them the text and visual spaces.
fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig {
        data_dir: dir.to_path_buf(),
        spaces: vec![
            SpaceConfig {
                name: "words".into(),
                dim: DIM,
                metric: Metric::Cosine,
                role: Some(SpaceRole::Text),
            },
            SpaceConfig {
                name: "looks".into(),
                dim: 8,
                metric: Metric::Cosine,
                role: Some(SpaceRole::Visual),
            },
            SpaceConfig {
                name: "raw".into(),
                dim: 4,
                metric: Metric::L2,
                role: None,
            },
        ],
        no_models: true,
        ..EngineConfig::default()
    };
    c.index.min_graph_size = 32;
    c.index.exact_scan_threshold = 50;
    c
}

/// A deterministic vector for item `i`: 20 well-separated clusters (`i % 20`), members spread a
/// little around their centre.
fn vector(i: usize, dim: usize) -> Vec<f32> {
    let c = i % 20;
    (0..dim)
        .map(|d| {
            ((c * 31 + d * 17) as f32 * 0.618).sin() + 0.05 * ((i * 13 + d * 7) as f32 * 1.3).cos()
        })
        .collect()
}

fn new_item(i: usize) -> NewItem {
    NewItem {
        item: Item {
            id: format!("item-{i:04}"),
            title: format!("Product {i}"),
            category: CATEGORIES[i % CATEGORIES.len()].into(),
            price: (i % 100) as f64 + 0.5,
            attributes: vec![(
                "brand".into(),
                if i % 10 == 0 {
                    "Acme".into()
                } else {
                    "Other".into()
                },
            )],
            ..Default::default()
        },
        vectors: vec![("words".into(), vector(i, DIM))],
        ..Default::default()
    }
}

async fn ingest(engine: &Engine, range: std::ops::Range<usize>) -> u64 {
    let out = engine
        .ingester()
        .write_group(range.clone().map(new_item).collect())
        .await
        .expect("write");
    assert!(out.rejected.is_empty(), "{:?}", out.rejected.first());
    assert_eq!(out.accepted, range.len());
    out.last_seq.expect("seq")
}

async fn search(engine: &Engine, req: SearchRequest) -> Vec<String> {
    engine
        .searcher()
        .search(req)
        .await
        .expect("search")
        .hits
        .into_iter()
        .map(|h| h.id)
        .collect()
}

fn vector_query(i: usize, k: u32) -> SearchRequest {
    // Empty space: the text-role space ("words").
    SearchRequest::new(
        Query::Vector {
            space: String::new(),
            values: vector(i, DIM),
        },
        k,
    )
}

async fn rebuild(engine: &Engine) {
    let mut rx = engine.collection().rebuild();
    loop {
        let phase = rx.borrow_and_update().phase;
        match phase {
            mmsearch::collection::RebuildPhase::Done => return,
            mmsearch::collection::RebuildPhase::Failed => {
                panic!("rebuild failed: {:?}", rx.borrow().error)
            }
            _ => {}
        }
        rx.changed().await.expect("rebuild progress");
    }
}

#[tokio::test]
async fn write_search_get_and_explain() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path()), None).await.expect("open");
    ingest(&engine, 0..200).await;

    let hits = engine
        .searcher()
        .search(SearchRequest {
            explain: true,
            ..vector_query(3, 5)
        })
        .await
        .expect("search");
    assert_eq!(hits.hits[0].id, "item-0003");
    assert!(
        (hits.hits[0].score - 1.0).abs() < 1e-4,
        "{}",
        hits.hits[0].score
    );
    let e = hits.hits[0].explanation.as_ref().expect("explanation");
    assert_eq!(
        (
            e.spaces[0].space.as_str(),
            e.spaces[0].role,
            e.spaces[0].rank
        ),
        ("words", "text", 1)
    );
    assert!(!e.plan.is_empty());
    assert_eq!(hits.hits[0].version.item.title, "Product 3");

    // More like this: the item itself is excluded, its neighbours (same i % 20) come first.
    let like = search(
        &engine,
        SearchRequest::new(Query::ItemId("item-0003".into()), 3),
    )
    .await;
    assert!(!like.contains(&"item-0003".to_string()), "{like:?}");
    assert!(
        like.iter()
            .all(|id| id.trim_start_matches("item-").parse::<usize>().unwrap() % 20 == 3),
        "{like:?}"
    );

    let got = engine.collection().get("item-0042").expect("get");
    assert_eq!(got.item.price, 42.5);
    assert_eq!(got.spaces, vec!["words".to_string()]);
    assert!(engine.collection().get("nope").is_err());

    // Paging: offset continues where the first page ended.
    let first = search(&engine, vector_query(7, 6)).await;
    let second = search(
        &engine,
        SearchRequest {
            offset: 3,
            ..vector_query(7, 3)
        },
    )
    .await;
    assert_eq!(&first[3..], &second[..]);
}

#[tokio::test]
async fn filters_pick_the_plan_and_hold() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path()), None).await.expect("open");
    ingest(&engine, 0..400).await;
    rebuild(&engine).await;

    let filtered = |filter: FilterSpec| SearchRequest {
        filter,
        explain: true,
        ..vector_query(5, 10)
    };
    // Acme: 40 items, under the exact-scan threshold (50).
    let acme = FilterSpec {
        attributes: vec![("brand".into(), "Acme".into())],
        ..Default::default()
    };
    let r = engine
        .searcher()
        .search(filtered(acme))
        .await
        .expect("search");
    assert!(r.exact);
    assert_eq!(r.hits.len(), 10);
    assert!(r.hits.iter().all(|h| h
        .version
        .item
        .attributes
        .contains(&("brand".into(), "Acme".into()))));
    assert_eq!(r.hits[0].explanation.as_ref().unwrap().plan, "exact");

    // A category holds 100 items: above the threshold, the filter runs inside the graph.
    let shoes = FilterSpec {
        categories: vec!["shoes".into()],
        price_max: Some(80.0),
        ..Default::default()
    };
    let r = engine
        .searcher()
        .search(filtered(shoes))
        .await
        .expect("search");
    assert!(!r.hits.is_empty());
    assert!(r
        .hits
        .iter()
        .all(|h| h.version.item.category == "shoes" && h.version.item.price <= 80.0));
    assert_eq!(r.hits[0].explanation.as_ref().unwrap().plan, "graph");

    let bad = FilterSpec {
        price_min: Some(5.0),
        price_max: Some(1.0),
        ..Default::default()
    };
    assert!(engine.searcher().search(filtered(bad)).await.is_err());
}

#[tokio::test]
async fn deletes_and_replacements() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path()), None).await.expect("open");
    ingest(&engine, 0..100).await;
    rebuild(&engine).await;

    let (deleted, missing) = engine
        .collection()
        .delete(&["item-0003".into(), "ghost".into()])
        .expect("delete");
    assert_eq!((deleted, missing), (1, vec!["ghost".to_string()]));
    let hits = search(&engine, vector_query(3, 10)).await;
    assert!(!hits.contains(&"item-0003".to_string()));
    assert_eq!(hits.len(), 10);

    // A replacement is one live version; the old one is a tombstone in the generation.
    let mut again = new_item(5);
    again.item.title = "Product 5, new".into();
    again.vectors = vec![("words".into(), vector(9, DIM))];
    let out = engine
        .ingester()
        .write_group(vec![again])
        .await
        .expect("write");
    assert_eq!(out.accepted, 1);
    let hits = search(&engine, vector_query(9, 20)).await;
    assert_eq!(
        hits.iter().filter(|id| *id == "item-0005").count(),
        1,
        "{hits:?}"
    );
    assert_eq!(
        engine.collection().get("item-0005").unwrap().item.title,
        "Product 5, new"
    );
    let stats = engine.stats();
    let words = stats
        .spaces
        .iter()
        .find(|s| s.spec.name == "words")
        .expect("space");
    assert_eq!(
        (words.base_vectors, words.fresh_vectors, words.tombstones),
        (100, 1, 2)
    );
}

#[tokio::test]
async fn bad_items_are_rejected_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path()), None).await.expect("open");
    let mut wrong_dim = new_item(1);
    wrong_dim.vectors = vec![("words".into(), vec![1.0; 3])];
    let mut unknown = new_item(2);
    unknown.vectors.push(("shared".into(), vec![1.0; DIM]));
    let mut weights = new_item(3);
    weights.item.text_weight = Some(0.0);
    weights.item.image_weight = Some(0.0);
    let mut no_vectors = new_item(4);
    no_vectors.vectors.clear();
    let mut empty_id = new_item(5);
    empty_id.item.id.clear();
    let items = vec![
        new_item(0),
        wrong_dim,
        unknown,
        weights,
        no_vectors,
        empty_id,
        new_item(6),
    ];
    let out = engine.ingester().write_group(items).await.expect("write");
    assert_eq!(out.accepted, 2);
    let reasons: Vec<(usize, &str)> = out
        .rejected
        .iter()
        .map(|r| (r.index, r.reason.as_str()))
        .collect();
    assert_eq!(
        reasons.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5],
        "{reasons:?}"
    );
    assert!(
        reasons[0].1.contains("dim") || reasons[0].1.contains("dimension"),
        "{reasons:?}"
    );
    assert!(reasons[1].1.contains("unknown vector space"), "{reasons:?}");
    assert!(reasons[2].1.contains("fusion weights"), "{reasons:?}");
    assert!(reasons[3].1.contains("without encoders"), "{reasons:?}");
    assert!(reasons[4].1.contains("id is empty"), "{reasons:?}");
    // Text queries need models; vector queries in a space without a role work.
    let e = engine
        .searcher()
        .search(SearchRequest::new(Query::Text("shoe".into()), 3))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("without models"), "{e}");
    let raw = SearchRequest::new(
        Query::Vector {
            space: "raw".into(),
            values: vec![1.0, 2.0, 3.0, 4.0],
        },
        3,
    );
    assert!(engine
        .searcher()
        .search(raw)
        .await
        .expect("raw space")
        .hits
        .is_empty());
}

#[tokio::test]
async fn recovery_replays_the_store_and_maps_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    let (before, last_seq) = {
        let engine = Engine::open(config(dir.path()), None).await.expect("open");
        ingest(&engine, 0..150).await;
        rebuild(&engine).await;
        // Written after the generation: recovered from the store into the mutable layer.
        let last = ingest(&engine, 150..180).await;
        engine
            .collection()
            .delete(&["item-0010".into()])
            .expect("delete");
        (search(&engine, vector_query(10, 10)).await, last)
        // dropped without flush: acknowledged writes are in the synced WAL
    };
    let engine = Engine::open(config(dir.path()), None)
        .await
        .expect("reopen");
    let stats = engine.stats();
    assert_eq!(stats.items, 179);
    assert_eq!(stats.last_seq, last_seq);
    let words = stats
        .spaces
        .iter()
        .find(|s| s.spec.name == "words")
        .expect("space");
    assert_eq!(
        (words.base_vectors, words.fresh_vectors, words.tombstones),
        (150, 30, 1)
    );
    assert_eq!(search(&engine, vector_query(10, 10)).await, before);
    // New writes continue the sequence.
    assert_eq!(ingest(&engine, 180..181).await, last_seq + 1);
}

/// Writes `n` items in groups through a fresh engine with `store` settings; returns the engine
/// and the SST files its store holds afterwards.
async fn ingest_with(dir: &Path, store: mmsearch::collection::StoreConfig, n: usize) -> Engine {
    let engine = Engine::open(
        EngineConfig {
            store,
            ..config(dir)
        },
        None,
    )
    .await
    .expect("open");
    for start in (0..n).step_by(250) {
        ingest(&engine, start..(start + 250).min(n)).await;
    }
    engine
}

fn sst_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("store"))
        .expect("store dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sst"))
        })
        .count()
}

/// RocksDB's memory (#17): broken down over all families, one block cache shared and bounded,
/// and a memtable budget that makes RocksDB flush without losing an acknowledged write.
#[tokio::test]
async fn store_memory_is_broken_down_and_budgeted() {
    use mmsearch::collection::StoreConfig;
    use mmsearch::telemetry::http::StateSource;
    const N: usize = 8000;
    const BUDGET: usize = 256 * 1024;
    let base = StoreConfig {
        block_cache_bytes: 512 * 1024,
        ..StoreConfig::default()
    };

    // Roomy budget: the writes sit in the memtables of `items` and `vectors`.
    let roomy_dir = tempfile::tempdir().unwrap();
    let roomy = ingest_with(roomy_dir.path(), base.clone(), N).await;
    let m = roomy.stats().store_memory;
    let family = |name: &str| {
        m.memtables
            .iter()
            .find(|(f, _)| *f == name)
            .map_or(0, |(_, b)| *b)
    };
    assert!(family("items") > 0 && family("vectors") > 0, "{m:?}");
    assert!(m.memtables_total() > BUDGET as u64, "{m:?}");
    assert!(
        m.block_cache <= m.block_cache_capacity && m.block_cache_capacity == 512 * 1024,
        "{m:?}"
    );
    // The gauges carry the same breakdown, the shared cache once.
    let gauges = roomy.state().memory;
    let kind = |k: &str| {
        gauges
            .iter()
            .filter(|(g, _)| *g == k)
            .map(|(_, b)| *b)
            .collect::<Vec<_>>()
    };
    assert_eq!(kind("rocksdb_memtables").len(), 1);
    assert!(kind("rocksdb_memtables")[0] > 0, "{gauges:?}");
    assert_eq!(kind("rocksdb_block_cache").len(), 1);
    assert!(kind("rocksdb_block_cache")[0] <= 512 * 1024, "{gauges:?}");
    assert!(!kind("rocksdb_table_readers").is_empty());
    eprintln!("roomy: {m:?}, {} sst files", sst_files(roomy_dir.path()));
    let roomy_memtables = m.memtables_total();
    assert!(roomy_memtables > 4 * BUDGET as u64, "{m:?}");
    drop(roomy);

    // A tiny budget: RocksDB flushes, memtables stay near the budget (plus a flush in flight and
    // arena blocks), nothing acknowledged is lost.
    let tight_dir = tempfile::tempdir().unwrap();
    // Memtables grow in arena blocks of write_buffer_bytes / 8: 128 KiB here.
    let tight_config = StoreConfig {
        memtable_budget_bytes: BUDGET,
        write_buffer_bytes: 1 << 20,
        ..base.clone()
    };
    let tight = ingest_with(tight_dir.path(), tight_config, N).await;
    let mut m = tight.stats().store_memory;
    for _ in 0..100 {
        // A flush the last write started may still be running.
        if m.memtables_total() <= 4 * BUDGET as u64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        m = tight.stats().store_memory;
    }
    eprintln!("tight: {m:?}, {} sst files", sst_files(tight_dir.path()));
    assert!(
        m.memtables_total() <= 4 * BUDGET as u64 && m.memtables_total() < roomy_memtables / 2,
        "{m:?}"
    );
    assert!(sst_files(tight_dir.path()) > 0);
    for i in (0..N).step_by(7) {
        assert_eq!(
            tight
                .collection()
                .get(&format!("item-{i:04}"))
                .expect("get")
                .item
                .price,
            (i % 100) as f64 + 0.5
        );
    }
    // Reads now go through SST files and the (bounded) shared cache.
    let m = tight.stats().store_memory;
    assert!(m.block_cache > 0 && m.block_cache <= 512 * 1024, "{m:?}");
    drop(tight);
    let reopened = Engine::open(
        EngineConfig {
            store: base,
            ..config(tight_dir.path())
        },
        None,
    )
    .await
    .expect("reopen");
    assert_eq!(reopened.stats().items, N);
}

/// Reopens the engine in `cfg`'s data dir. The rebuild thread of the previous engine drops its
/// handle on the collection (and so the RocksDB lock) just after reporting Done: retry briefly.
async fn reopen(cfg: &EngineConfig) -> Engine {
    for _ in 0..100 {
        match Engine::open(cfg.clone(), None).await {
            Ok(e) => return e,
            Err(e) if e.to_string().contains("lock") => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
    panic!("store still locked after 5 s")
}

/// A restart after each kind of generation serves the same answers: the flat graph from either
/// builder, and a generation in the hnsw_rs format of older releases, which is served on start
/// and rebuilt in the flat format.
#[tokio::test]
async fn restart_after_each_generation_kind() {
    use mmsearch_index::generation::{self, GenerationWriter};
    use mmsearch_index::graph_file::Builder;
    for builder in [Builder::Native, Builder::HnswRs] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.index.builder = builder;
        let before = {
            let engine = Engine::open(cfg.clone(), None).await.expect("open");
            ingest(&engine, 0..200).await;
            rebuild(&engine).await;
            let g = engine.collection().base_generation();
            assert!(
                !g.is_legacy() && g.segment("words").unwrap().flat.is_some(),
                "{builder:?}"
            );
            search(&engine, vector_query(7, 10)).await
        };
        let engine = reopen(&cfg).await;
        let g = engine.collection().base_generation();
        assert_eq!(
            g.segment("words")
                .unwrap()
                .flat
                .as_ref()
                .unwrap()
                .file
                .builder,
            builder
        );
        assert_eq!(
            search(&engine, vector_query(7, 10)).await,
            before,
            "{builder:?}"
        );
        assert_eq!(
            engine
                .stats()
                .spaces
                .iter()
                .find(|s| s.spec.name == "words")
                .unwrap()
                .fresh_vectors,
            0
        );

        if builder != Builder::Native {
            continue;
        }
        // Rewrite the generation in the legacy format (same rows, same snapshot), as an older
        // release would have left it, then restart.
        let index_dir = engine.collection().config().index_dir();
        let specs = engine.collection().specs().to_vec();
        let params = engine.collection().config().index.hnsw_params();
        let mut w = GenerationWriter::create(&index_dir, g.id + 1, g.snapshot_seq).unwrap();
        for spec in &specs {
            let seg = g.segment(&spec.name).unwrap();
            let rows: Vec<(u64, &[f32])> = seg
                .ids()
                .iter()
                .map(|&id| (id, seg.get(id).unwrap()))
                .collect();
            if rows.len() >= 32 {
                w.add_space_legacy(spec, &params, &rows).unwrap();
            } else {
                w.add_space(spec, &params, &rows, 32, &mut |_| {}).unwrap();
            }
        }
        let legacy_id = g.id + 1;
        w.commit().unwrap();
        drop(g);
        drop(engine);
        let engine = reopen(&cfg).await;
        // The legacy generation serves until the migration's rebuild replaces it.
        rebuild(&engine).await;
        let g = engine.collection().base_generation();
        assert!(
            g.id > legacy_id && !g.is_legacy(),
            "migrated to the flat format"
        );
        assert!(generation::list_generations(&index_dir)
            .unwrap()
            .contains(&g.id));
        assert_eq!(search(&engine, vector_query(7, 10)).await, before);
    }
}
