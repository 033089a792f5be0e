//! Lexical search (#12) against a real server without models: a word of a description is found
//! by LEXICAL as soon as the write is acknowledged and after kill -9; deleted items disappear;
//! a rebuild swaps the lexical part with the vector part; browse; bad mode/sort values.

mod common;

use common::*;
use mmsearch::pb;
use pb::search_request::Query;
use tonic::Code;

const DIM: usize = 8;

fn unit(i: usize) -> Vec<f32> {
    let mut v = vec![0.05f32; DIM];
    v[i % DIM] = 1.0;
    normalise(v)
}

fn described(
    id: &str,
    title: &str,
    description: &str,
    category: &str,
    price: f64,
    i: usize,
) -> pb::Item {
    pb::Item {
        description: description.into(),
        ..item(id, title, category, price, unit(i))
    }
}

fn lexical(text: &str, k: u32) -> pb::SearchRequest {
    pb::SearchRequest {
        query: Some(Query::Text(text.into())),
        top_k: k,
        mode: pb::SearchMode::Lexical as i32,
        explain: true,
        ..Default::default()
    }
}

async fn find(server: &Server, text: &str) -> pb::SearchResponse {
    server
        .search()
        .await
        .search(lexical(text, 5))
        .await
        .expect("lexical search")
        .into_inner()
}

fn generation_dirs(data: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(data.join("index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("gen-") && !name.contains(".tmp")
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn description_words_found_after_ack_kill9_delete_and_rebuild() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let mut server = Server::start(&data, &config_with_space(DIM, ""));
    let summary = upsert(
        &server,
        vec![
            described(
                "boot",
                "Hiking boot",
                "Waterproof Gore-Tex membrane with a Vibram outsole.",
                "shoes",
                120.0,
                0,
            ),
            described(
                "tent",
                "Dome tent",
                "Two-person tent, aluminium poles, 2.1 kg.",
                "garden",
                199.0,
                1,
            ),
            described(
                "cam",
                "Nikkormat FT2",
                "Classic 35mm SLR camera body in chrome.",
                "photo",
                150.0,
                2,
            ),
        ],
    )
    .await;
    assert_eq!(summary.accepted, 3);

    // Found right after the acknowledgement, with the matched word highlighted.
    let r = find(&server, "vibram").await;
    assert_eq!(ids(&r), vec!["boot".to_string()]);
    assert!(
        r.hits[0].snippet.contains("<b>Vibram</b>"),
        "{}",
        r.hits[0].snippet
    );
    let e = r.hits[0].explanation.as_ref().expect("explanation");
    assert_eq!(e.plan, "lexical");
    let l = e.lexical.as_ref().expect("lexical part");
    assert_eq!(l.rank, 1);
    assert!(l.bm25 > 0.0 && (l.contribution - r.hits[0].score).abs() < 1e-6);
    // Stemming ("poles" → "pole") and one typo on a long word.
    assert_eq!(ids(&find(&server, "pole").await), vec!["tent".to_string()]);
    assert_eq!(
        ids(&find(&server, "nikkormat").await),
        vec!["cam".to_string()]
    );
    assert_eq!(
        ids(&find(&server, "nikormat").await),
        vec!["cam".to_string()]
    );

    // kill -9: the RAM part is rebuilt from RocksDB.
    server.kill9();
    let mut server = Server::start(&data, &config_with_space(DIM, ""));
    assert_eq!(
        ids(&find(&server, "vibram").await),
        vec!["boot".to_string()]
    );
    assert_eq!(
        ids(&find(&server, "aluminium").await),
        vec!["tent".to_string()]
    );

    // Deleted items disappear; a replaced item is found by its new words only.
    let mut ing = server.ingest().await;
    ing.delete(pb::DeleteRequest {
        ids: vec!["tent".into()],
    })
    .await
    .unwrap();
    assert!(find(&server, "aluminium").await.hits.is_empty());
    upsert(
        &server,
        vec![described(
            "cam",
            "Nikkormat FT3",
            "Black SLR body, Nikon F mount.",
            "photo",
            160.0,
            2,
        )],
    )
    .await;
    assert!(find(&server, "chrome").await.hits.is_empty());
    assert_eq!(
        ids(&find(&server, "black mount").await),
        vec!["cam".to_string()]
    );

    // A rebuild publishes the lexical index inside the new generation folder, with the graph.
    let before = generation_dirs(&data).len();
    let progress = rebuild(&server).await;
    let last = progress.last().expect("rebuild progress");
    assert_eq!(last.phase, "done", "{last:?}");
    let gens = generation_dirs(&data);
    assert_eq!(gens.len(), before + 1);
    let newest = gens.last().unwrap();
    assert!(newest.join("MANIFEST.json").exists());
    assert!(
        newest.join("lexical").join("meta.json").exists(),
        "lexical index inside {}",
        newest.display()
    );
    assert_eq!(
        ids(&find(&server, "vibram").await),
        vec!["boot".to_string()]
    );
    assert!(
        find(&server, "aluminium").await.hits.is_empty(),
        "deleted before the rebuild: not in the new generation"
    );
    assert!(find(&server, "chrome").await.hits.is_empty());
    // A write after the rebuild goes to the RAM part; base and RAM rank together.
    upsert(
        &server,
        vec![described(
            "sock",
            "Wool sock",
            "Merino wool, fits a Vibram boot.",
            "shoes",
            12.0,
            3,
        )],
    )
    .await;
    let r = find(&server, "vibram").await;
    assert_eq!(ids(&r).len(), 2, "{:?}", ids(&r));

    // After kill -9 the generation's lexical part is mapped from disk and only newer writes
    // are replayed: the same answers.
    server.kill9();
    let server = Server::start(&data, &config_with_space(DIM, ""));
    let again = find(&server, "vibram").await;
    assert_eq!(ids(&again), ids(&r));
    assert_eq!(
        ids(&find(&server, "black mount").await),
        vec!["cam".to_string()]
    );
    assert!(find(&server, "aluminium").await.hits.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_filters_sorts_and_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("d"), &config_with_space(DIM, ""));
    let items: Vec<pb::Item> = (0..30)
        .map(|i| {
            item(
                &format!("i{i:02}"),
                "Thing",
                if i % 3 == 0 { "lamps" } else { "chairs" },
                (i * 7 % 30) as f64,
                unit(i),
            )
        })
        .collect();
    upsert(&server, items).await;
    let mut s = server.search().await;
    let browse = |sort: pb::SortBy, offset: u32| pb::SearchRequest {
        top_k: 4,
        offset,
        filter: Some(pb::Filter {
            categories: vec!["lamps".into()],
            price_max: Some(25.0),
            ..Default::default()
        }),
        sort: sort as i32,
        ..Default::default()
    };
    // lamps: i = 0, 3, …, 27 → prices i*7 % 30 = 0, 21, 12, 3, 24, 15, 6, 27, 18, 9; ≤ 25: 9 of them
    let r = s
        .search(browse(pb::SortBy::PriceAsc, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.total, Some(9));
    let prices: Vec<f64> = r
        .hits
        .iter()
        .map(|h| h.item.as_ref().unwrap().price)
        .collect();
    assert_eq!(prices, vec![0.0, 3.0, 6.0, 9.0]);
    let r = s
        .search(browse(pb::SortBy::PriceDesc, 8))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.total, r.hits.len()), (Some(9), 1));
    assert_eq!(r.hits[0].item.as_ref().unwrap().price, 0.0);
    // Newest first: the last written lamp under the bound (i = 27, price 9; i = 21 costs 27).
    let r = s
        .search(browse(pb::SortBy::Unspecified, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        vec!["i27", "i24", "i18", "i15"]
    );
    // A sort alone browses everything.
    let all = pb::SearchRequest {
        top_k: 1,
        sort: pb::SortBy::PriceDesc as i32,
        ..Default::default()
    };
    let r = s.search(all).await.unwrap().into_inner();
    assert_eq!(
        (r.total, r.hits[0].item.as_ref().unwrap().price),
        (Some(30), 29.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_modes_and_sorts_are_invalid_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("d"), &config_with_space(DIM, ""));
    upsert(
        &server,
        vec![described("a", "Lamp", "Brass desk lamp", "lamps", 10.0, 0)],
    )
    .await;
    let mut s = server.search().await;
    let cases: Vec<(&str, pb::SearchRequest, Code)> = vec![
        (
            "unknown mode",
            pb::SearchRequest {
                mode: 9,
                ..lexical("lamp", 5)
            },
            Code::InvalidArgument,
        ),
        (
            "unknown sort",
            pb::SearchRequest {
                top_k: 5,
                sort: 9,
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            "unknown fusion",
            pb::SearchRequest {
                fusion: 7,
                ..lexical("lamp", 5)
            },
            Code::InvalidArgument,
        ),
        (
            "weight out of range",
            pb::SearchRequest {
                lexical_weight: Some(1.5),
                ..lexical("lamp", 5)
            },
            Code::InvalidArgument,
        ),
        (
            "sort with a query",
            pb::SearchRequest {
                sort: pb::SortBy::PriceAsc as i32,
                ..lexical("lamp", 5)
            },
            Code::InvalidArgument,
        ),
        (
            "lexical vector query",
            pb::SearchRequest {
                mode: pb::SearchMode::Lexical as i32,
                ..vector_query(unit(0), 5)
            },
            Code::InvalidArgument,
        ),
        (
            "hybrid without models",
            pb::SearchRequest {
                mode: pb::SearchMode::Hybrid as i32,
                ..lexical("lamp", 5)
            },
            Code::Unimplemented,
        ),
    ];
    for (name, req, want) in cases {
        assert_eq!(s.search(req).await.unwrap_err().code(), want, "case {name}");
    }
    assert_eq!(
        ids(&s.search(lexical("brass", 5)).await.unwrap().into_inner()),
        vec!["a".to_string()]
    );
}
