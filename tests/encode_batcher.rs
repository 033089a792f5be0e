//! The ingest batcher: concurrent single submissions are batched, results match direct calls,
//! and one bad input only fails its own request.

#[path = "common/encode.rs"]
mod common;

use std::sync::Arc;

use common::*;
use mmsearch::encode::batcher::{BatcherConfig, EncodeBatcher};
use mmsearch::encode::{EncodeError, Encoders};

fn shared_encoders() -> Arc<Encoders> {
    Arc::new(Encoders::load(&config()).unwrap_or_else(|e| panic!("load: {e}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_results_match_direct_and_errors_are_isolated() {
    let enc = shared_encoders();
    let b = EncodeBatcher::spawn(
        Arc::clone(&enc),
        &BatcherConfig {
            max_batch: 8,
            max_wait_ms: 20,
            queue: 64,
        },
    );

    let texts: Vec<String> = (0..20)
        .map(|i| format!("product {i} blue cotton t-shirt"))
        .collect();
    let handles: Vec<_> = texts
        .iter()
        .cloned()
        .map(|t| {
            let b = b.clone();
            tokio::spawn(async move { b.embed_text(t).await })
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let direct = enc.embed_texts(&refs).expect("direct");
    for (h, d) in handles.into_iter().zip(&direct) {
        let v = h.await.expect("join").expect("embed");
        // batch composition changes padding only; masked mean makes that ~1e-7
        assert!(max_abs(&v, d) < 1e-5);
    }

    let good = std::fs::read(models_dir().join("golden/img_gradient.png")).expect("png");
    let mut jobs = Vec::new();
    for i in 0..6 {
        let b = b.clone();
        let bytes = if i == 3 {
            b"not an image".to_vec()
        } else {
            good.clone()
        };
        jobs.push(tokio::spawn(async move { b.embed_image(bytes).await }));
    }
    let direct = enc.embed_images(&[&good]).expect("direct image").remove(0);
    for (i, j) in jobs.into_iter().enumerate() {
        let r = j.await.expect("join");
        if i == 3 {
            assert!(
                matches!(r, Err(EncodeError::InvalidInput(_))),
                "bad image: {r:?}"
            );
        } else {
            let v = r.expect("good image");
            assert!(max_abs(&v.shared, &direct.shared) < 1e-5);
        }
    }
    // empty text fails alone too
    let (a, e) = tokio::join!(
        b.embed_text("wooden chair".into()),
        b.embed_text("  ".into())
    );
    assert!(a.is_ok());
    assert!(matches!(e, Err(EncodeError::InvalidInput(_))));
}
