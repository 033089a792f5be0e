//! Space names are data: with the text and visual spaces renamed in the config (roles bind
//! them), ingest with photos and text, photo and voice queries work as with the defaults.
//! In process through `Engine`, with the real models and the Vendure demo catalogue (both
//! prepared by deploy/test.sh).

#[path = "common/encode.rs"]
mod encode;

use mmsearch::engine::{Engine, EngineConfig};
use mmsearch::model::NewItem;
use mmsearch::pipeline::{Query, SearchRequest, SpaceConfig, SpaceRole};
use mmsearch_index::Metric;

fn catalogue() -> Vec<NewItem> {
    let path = encode::demo_catalog();
    let base = path.parent().expect("catalogue dir").to_path_buf();
    std::fs::read_to_string(&path)
        .expect("catalogue")
        .lines()
        .map(|l| {
            mmsearch::server::convert::new_item(
                mmsearch::cli::catalog::parse_line(l, &base).expect("line"),
            )
        })
        .collect()
}

async fn top(engine: &Engine, query: Query, k: u32) -> (Vec<String>, Option<String>) {
    let r = engine
        .searcher()
        .search(SearchRequest {
            explain: true,
            ..SearchRequest::new(query, k)
        })
        .await
        .expect("search");
    (
        r.hits
            .iter()
            .map(|h| h.version.item.title.clone())
            .collect(),
        r.transcript,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_spaces_keep_text_image_voice_and_ingest_working() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        data_dir: dir.path().to_path_buf(),
        spaces: vec![
            SpaceConfig {
                name: "words".into(),
                dim: 384,
                metric: Metric::Cosine,
                role: Some(SpaceRole::Text),
            },
            SpaceConfig {
                name: "looks".into(),
                dim: 1280,
                metric: Metric::Cosine,
                role: Some(SpaceRole::Visual),
            },
        ],
        encode: encode::config(),
        ..EngineConfig::default()
    };
    let encoders = Engine::load_encoders(&config).expect("models");
    let engine = Engine::open(config, encoders).await.expect("engine");

    let items = catalogue();
    let n = items.len();
    let tripod = items
        .iter()
        .find(|i| i.item.title == "Tripod")
        .expect("tripod");
    let (tripod_id, photo) = (
        tripod.item.id.clone(),
        tripod.images.first().cloned().expect("tripod photo"),
    );
    let out = engine.ingester().write_group(items).await.expect("ingest");
    assert_eq!(out.accepted, n, "{:?}", out.rejected.first());
    // Ingest filled both renamed spaces from titles and photos.
    let stats = engine.stats();
    for (space, want) in [("words", n), ("looks", n)] {
        let s = stats
            .spaces
            .iter()
            .find(|s| s.spec.name == space)
            .expect(space);
        assert_eq!(s.fresh_vectors + s.base_vectors, want, "{space}");
    }

    let (titles, _) = top(&engine, Query::Text("camera on a tripod".into()), 5).await;
    assert_eq!(
        titles.first().map(String::as_str),
        Some("Tripod"),
        "text: {titles:?}"
    );

    let r = engine
        .searcher()
        .search(SearchRequest {
            explain: true,
            ..SearchRequest::new(Query::Image(photo), 3)
        })
        .await
        .expect("image");
    assert_eq!(r.hits[0].version.item.title, "Tripod", "image query");
    let parts = &r.hits[0].explanation.as_ref().expect("explanation").spaces;
    let names: Vec<(&str, &str)> = parts.iter().map(|p| (p.space.as_str(), p.role)).collect();
    assert_eq!(
        names,
        vec![("words", "text"), ("looks", "visual")],
        "both renamed spaces contribute"
    );

    let wav = dir.path().join("q.wav");
    encode::speak("wireless mouse", &wav);
    let (titles, transcript) = top(&engine, Query::Audio(std::fs::read(&wav).unwrap()), 3).await;
    assert!(transcript
        .unwrap_or_default()
        .to_lowercase()
        .contains("mouse"));
    assert!(
        titles.iter().any(|t| t == "Wireless Optical Mouse"),
        "voice: {titles:?}"
    );

    // More like this in the renamed visual space (by name), and in the text space by default.
    let (like, _) = top(&engine, Query::ItemId(tripod_id.clone()), 3).await;
    assert_eq!(like.len(), 3);
    let r = engine
        .searcher()
        .search(SearchRequest {
            space: Some("looks".into()),
            ..SearchRequest::new(Query::ItemId(tripod_id), 3)
        })
        .await
        .expect("item query in the visual space");
    assert_eq!(r.hits.len(), 3);
}
