//! Entry points shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`) and the regression test
//! (`tests/fuzz_regressions.rs`, which includes this file with `#[path]`). Each takes arbitrary
//! bytes, runs one input-handling path of the server exactly as a request would, and panics only
//! on a bug: a clean `Err` is a pass. The asserts state what every accepted input must satisfy.

#![allow(dead_code)]

use std::sync::OnceLock;

use mmsearch::cli::catalog;
use mmsearch::encode::audio::mel::MelFrontEnd;
use mmsearch::encode::audio::wav;
use mmsearch::encode::image::{self, PreprocessConfig, ResizeMode};
use mmsearch::encode::EncodeError;
use mmsearch::engine::EngineConfig;
use mmsearch::fusion::FusionConfig;
use mmsearch::pb;
use mmsearch::pipeline::QueryLimits;
use mmsearch::pipeline::{ingest, search, Query};
use mmsearch::server::convert;
use mmsearch_index::{Metric, SpaceSpec};
use prost::Message;

/// Pixel limit for the image target. The server default is 40 MP; a smaller one keeps each
/// execution fast while exercising the same header checks (the limit is a parameter, not a
/// special case) — anything over it must be refused before decoding.
pub const IMAGE_MAX_PIXELS: u64 = 2_000_000;
/// Whisper's window, the server's `max_audio_seconds` default.
pub const AUDIO_MAX_SECONDS: f32 = 30.0;
pub const MODEL_RATE: u32 = 16_000;
const MEL_SAMPLES: usize = 32_000;
const MEL_FRAMES: usize = 200;

fn encode_error_is_clean(e: &EncodeError) -> bool {
    matches!(e, EncodeError::InvalidInput(_) | EncodeError::TooLarge(_))
}

/// Photo query/ingest path: header probe → decode → RGB on white → resize (pad, crop or squash,
/// chosen by the input length so corpus files stay plain images) → normalised CHW tensor.
pub fn image(data: &[u8]) {
    let resize = match data.len() % 3 {
        0 => ResizeMode::Pad,
        1 => ResizeMode::Crop { padding: 32 },
        _ => ResizeMode::Squash,
    };
    let cfg = PreprocessConfig {
        resize,
        max_pixels: IMAGE_MAX_PIXELS,
        ..PreprocessConfig::default()
    };
    let side = cfg.size as usize;
    match image::preprocess_bytes(data, &cfg) {
        Ok(t) => {
            assert_eq!(t.len(), 3 * side * side);
            assert!(t.iter().all(|v| v.is_finite()));
        }
        Err(e) => assert!(encode_error_is_clean(&e), "unexpected error kind: {e}"),
    }
}

fn mel_front() -> &'static MelFrontEnd {
    static FRONT: OnceLock<MelFrontEnd> = OnceLock::new();
    FRONT.get_or_init(|| {
        // Whisper's shape (80 mels, n_fft 400, hop 160) over a 2 s window instead of 30 s: the
        // same code (pad/trim, reflect, FFT, filters, log clamp) at 15× the executions per
        // second. A triangular bank stands in for the model's slaney filters, which only
        // change the weights, not the code path.
        let (n_mels, n_fft) = (80usize, 400usize);
        let bins = n_fft / 2 + 1;
        let mut filters = vec![0f32; n_mels * bins];
        for m in 0..n_mels {
            let centre = (m + 1) as f32 * bins as f32 / (n_mels + 1) as f32;
            for b in 0..bins {
                filters[m * bins + b] = (1.0 - (b as f32 - centre).abs() / 3.0).max(0.0);
            }
        }
        MelFrontEnd::new(filters, n_mels, n_fft, 160, MEL_SAMPLES, MEL_FRAMES)
            .expect("valid front-end shape")
    })
}

/// Voice query path up to the model: WAV parse (length limit from the header) → mono →
/// resample to 16 kHz → log-mel.
pub fn audio(data: &[u8]) {
    match wav::decode_wav(data, AUDIO_MAX_SECONDS) {
        Ok(pcm) => {
            assert!(!pcm.samples.is_empty());
            assert!(
                pcm.seconds() <= AUDIO_MAX_SECONDS * 1.0001,
                "{} s accepted",
                pcm.seconds()
            );
            assert!(pcm.samples.iter().all(|x| x.is_finite()));
            let s = wav::resample(&pcm.samples, pcm.sample_rate, MODEL_RATE);
            assert!(
                s.iter().all(|x| x.is_finite()),
                "resampler produced non-finite samples"
            );
            let mel = mel_front().compute(&s);
            assert_eq!(mel.len(), 80 * MEL_FRAMES);
            assert!(
                mel.iter().all(|x| x.is_finite()),
                "log-mel has non-finite values"
            );
        }
        Err(e) => assert!(encode_error_is_clean(&e), "unexpected error kind: {e}"),
    }
}

/// The spaces requests are checked against: the default config's (`shared` 384-d, `visual`
/// 1280-d, cosine) plus two 4-d spaces so short inputs reach the accept path of both metrics.
pub fn specs() -> &'static [SpaceSpec] {
    static SPECS: OnceLock<Vec<SpaceSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        let mut s = EngineConfig::default().collection().spaces;
        s.push(SpaceSpec {
            name: "c4".into(),
            dim: 4,
            metric: Metric::Cosine,
        });
        s.push(SpaceSpec {
            name: "l4".into(),
            dim: 4,
            metric: Metric::L2,
        });
        s
    })
}

fn check_prepared(space: &str, v: &[f32]) {
    let spec = specs()
        .iter()
        .find(|s| s.name == space)
        .expect("accepted vector has a known space");
    assert_eq!(v.len(), spec.dim);
    assert!(v.iter().all(|x| x.is_finite()));
    if spec.metric == Metric::Cosine {
        let n: f64 = v
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt();
        assert!((n - 1.0).abs() < 1e-3, "cosine vector prepared to norm {n}");
    }
}

/// An item as `ingest` sees it after the wire conversion: validation, and every vector it
/// accepts must prepare cleanly into its space.
fn ingest_item(item: pb::Item) {
    let it = convert::new_item(item);
    if ingest::validate_item(&it, specs(), &FusionConfig::default()).is_ok() {
        for (space, values) in &it.vectors {
            let spec = specs()
                .iter()
                .find(|s| s.name == *space)
                .expect("validated space exists");
            let v = spec
                .metric
                .prepare(spec.dim, values)
                .expect("validated vector prepares");
            check_prepared(space, &v);
        }
        for img in &it.images {
            if let Err(e) = image::probe(img, IMAGE_MAX_PIXELS) {
                assert!(encode_error_is_clean(&e), "{e}");
            }
        }
    }
}

/// One line of an `mmsearch ingest` catalogue, photos "loaded" as their path bytes (no disk).
pub fn catalog_line(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(item) = catalog::parse_line_with(line, |p| Ok(p.as_bytes().to_vec())) {
        assert!(!item.id.trim().is_empty());
        ingest_item(item);
    }
}

/// Arbitrary bytes decoded (prost) as a `SearchRequest` and as an `UpsertRequest`, converted to
/// the domain types and validated exactly as the services do before any encoder or index work.
pub fn request(data: &[u8]) {
    static LIMITS: OnceLock<QueryLimits> = OnceLock::new();
    let limits = LIMITS.get_or_init(QueryLimits::default);
    if let Ok(r) = pb::SearchRequest::decode(data) {
        let Ok(req) = convert::search_request(r) else {
            return;
        };
        if search::validate_request(&req, limits).is_ok() {
            // the window the searcher allocates for must be what validation bounded
            let window = u64::from(req.offset) + u64::from(req.top_k);
            assert!(window <= u64::from(limits.max_window) && req.top_k >= 1);
            assert!(!req.min_score.is_nan());
            // the HNSW beam is allocated with capacity ef (hnsw_rs `search_layer`), up to 8×
            // when tombstones crowd it: an accepted ef must keep that allocation small
            assert!(
                req.ef.map_or(0, u64::from) <= 1 << 20,
                "accepted ef {:?}",
                req.ef
            );
            match &req.query {
                Some(Query::Vector { space, values }) => {
                    let space = if space.is_empty() {
                        "shared"
                    } else {
                        space.as_str()
                    };
                    if let Ok(v) = search::prepare_query_vector(specs(), space, values) {
                        check_prepared(space, &v);
                    }
                }
                Some(Query::Image(b)) => {
                    if let Err(e) = image::probe(b, IMAGE_MAX_PIXELS) {
                        assert!(encode_error_is_clean(&e), "{e}");
                    }
                }
                Some(Query::Text(t)) => assert!(!t.trim().is_empty()),
                Some(_) => {}
                None => panic!("validation accepted an empty query"),
            }
        }
    }
    if let Ok(u) = pb::UpsertRequest::decode(data) {
        if let Some(item) = u.item {
            ingest_item(item);
        }
    }
}
