//! Vectors remember the models that made them: a data directory written with one model set is
//! refused by an engine loading the other, `Engine::reembed` (what `mmsearch admin reembed` runs)
//! re-encodes it, and then the new set serves it — here a Chinese query finding an English
//! product with the multilingual set. Needs both sets from `models/setup.sh`.

#[path = "common/encode.rs"]
mod common;

use mmsearch::encode::{EncodeConfig, ModelSet};
use mmsearch::engine::{Engine, EngineConfig, EngineError};
use mmsearch::model::{Item, NewItem};
use mmsearch::pipeline::{Query, SearchRequest};
use std::path::Path;

const PRODUCTS: [(&str, &str, &str); 5] = [
    ("cordless-mouse", "Wireless Optical Mouse", "The Logitech M185 wireless mouse with a tiny USB receiver."),
    ("tent", "Tent", "With tons of space inside for max. 4 persons, full head height throughout the entire tent."),
    ("football", "Football", "High-contrast graphics for high-visibility during play, machine-stitched casing."),
    ("leather-sofa", "Leather Sofa", "Premium tan-brown bonded leather seat with a lever activated recline feature."),
    ("aloe-vera", "Aloe Vera", "Decorative Aloe vera makes a lovely house plant, so easy to care for."),
];

fn config(dir: &Path, set: ModelSet) -> EngineConfig {
    EngineConfig {
        data_dir: dir.to_path_buf(),
        encode: EncodeConfig {
            set,
            speech_model: None,
            ..common::config()
        },
        ..EngineConfig::default()
    }
}

fn items() -> Vec<NewItem> {
    PRODUCTS
        .iter()
        .map(|(id, title, description)| NewItem {
            item: Item {
                id: id.to_string(),
                title: title.to_string(),
                description: description.to_string(),
                ..Default::default()
            },
            ..Default::default()
        })
        .collect()
}

async fn top(engine: &Engine, text: &str) -> String {
    let r = engine
        .searcher()
        .search(SearchRequest::new(Query::Text(text.into()), 3))
        .await
        .expect("search");
    r.hits.first().map(|h| h.id.clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_refuses_other_models_until_reembedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let engine = Engine::start(config(dir.path(), ModelSet::Default))
            .await
            .expect("default set");
        let out = engine.ingester().write_group(items()).await.expect("write");
        assert_eq!(out.accepted, PRODUCTS.len(), "{:?}", out.rejected);
        assert_eq!(
            engine
                .collection()
                .vector_models()
                .expect("meta")
                .as_deref(),
            Some("text=minilm-l6-v2 image=effnet-lite0")
        );
    }

    let refused = Engine::start(config(dir.path(), ModelSet::Multilingual))
        .await
        .err()
        .expect("mismatched models must be refused");
    assert!(
        matches!(refused, EngineError::ModelsChanged { .. }),
        "{refused}"
    );
    let msg = refused.to_string();
    assert!(
        msg.contains("minilm-l6-v2")
            && msg.contains("multilingual-e5-small")
            && msg.contains("mmsearch admin reembed"),
        "{msg}"
    );

    {
        let mut c = config(dir.path(), ModelSet::Multilingual);
        c.allow_model_change = true;
        let engine = Engine::start(c).await.expect("open for re-encoding");
        let mut seen = Vec::new();
        let report = engine
            .reembed(|done, total| seen.push((done, total)))
            .await
            .expect("reembed");
        assert_eq!(
            (report.items, report.reencoded),
            (PRODUCTS.len(), PRODUCTS.len())
        );
        assert!(report.rejected.is_empty() && report.without_photos.is_empty());
        assert_eq!(seen.first(), Some(&(0, PRODUCTS.len())));
        assert_eq!(seen.last(), Some(&(PRODUCTS.len(), PRODUCTS.len())));
        assert_eq!(
            engine
                .collection()
                .vector_models()
                .expect("meta")
                .as_deref(),
            Some("text=multilingual-e5-small image=effnet-lite0")
        );
    }

    {
        let engine = Engine::start(config(dir.path(), ModelSet::Multilingual))
            .await
            .expect("multilingual serves it now");
        assert_eq!(engine.stats().items, PRODUCTS.len());
        assert_eq!(top(&engine, "不用插线的电脑鼠标").await, "cordless-mouse");
        assert_eq!(top(&engine, "wireless mouse").await, "cordless-mouse");
    }
    let back = Engine::start(config(dir.path(), ModelSet::Default))
        .await
        .err()
        .expect("now the default set is refused");
    assert!(matches!(back, EngineError::ModelsChanged { .. }), "{back}");
}

/// A re-encode that cannot finish (a photo-only item whose photo is gone) leaves the directory
/// marked unfinished: it holds vectors of both sets, so neither set may serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_reembed_is_refused_by_both_sets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let photo =
        std::fs::read(common::models_dir().join("golden/img_alpha.png")).expect("golden png");
    {
        let engine = Engine::start(config(dir.path(), ModelSet::Default))
            .await
            .expect("default set");
        let mut all = items();
        all.push(NewItem {
            item: Item {
                id: "photo-only".into(),
                image_uris: vec!["/nonexistent/photo-only.png".into()],
                ..Default::default()
            },
            images: vec![photo],
            ..Default::default()
        });
        let out = engine.ingester().write_group(all).await.expect("write");
        assert_eq!(out.accepted, PRODUCTS.len() + 1, "{:?}", out.rejected);
    }
    {
        let mut c = config(dir.path(), ModelSet::Multilingual);
        c.allow_model_change = true;
        let engine = Engine::start(c).await.expect("open for re-encoding");
        let report = engine.reembed(|_, _| {}).await.expect("reembed runs");
        assert_eq!(report.reencoded, PRODUCTS.len());
        assert_eq!(report.without_photos, vec!["photo-only".to_string()]);
        assert_eq!(
            report
                .rejected
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            vec!["photo-only"]
        );
        let marked = engine
            .collection()
            .vector_models()
            .expect("meta")
            .unwrap_or_default();
        assert!(marked.ends_with("re-encoding unfinished"), "{marked}");
    }
    for set in [ModelSet::Multilingual, ModelSet::Default] {
        let err = Engine::start(config(dir.path(), set))
            .await
            .err()
            .expect("an unfinished re-encode must be refused");
        assert!(err.to_string().contains("re-encoding unfinished"), "{err}");
    }
}
