//! Encoder latency / throughput on this machine (not a criterion bench).
//!
//!     cargo bench --bench encode            # MMSEARCH_MODELS / ORT_DYLIB_PATH as for the tests
//!     benches/run_encode.sh                 # this + the Python onnxruntime reference, side by side
//!
//! stdout: one JSON line per case, the schema shared with `benches/encode_reference.py`:
//! `{"engine":"rust","case":..,"batch":..,"n":..,"p50_ms":..,"p95_ms":..,"mean_ms":..,"items_per_s":..}`
//! (percentiles interpolated linearly like `numpy.percentile`; `items_per_s = batch / p50`).
//! stderr: what was loaded, which inputs, the transcript — for humans.
//!
//! Every case runs `warmup` untimed iterations, then a fixed `n` timed ones.
//!
//! Inputs (same environment variables as the Python reference):
//! * `MMSEARCH_BENCH_JPEG`: the batch-1 photo; default the Vendure asset whose longer side is
//!   closest to 1200 px (florian-klauer-14840-unsplash.jpg, 800×1200);
//! * `MMSEARCH_BENCH_PNG`: default `$MMSEARCH_MODELS/golden/img_alpha.png` (320×200 RGBA);
//! * `MMSEARCH_BENCH_WAV`: default `$MMSEARCH_MODELS/golden/voice.wav` (espeak-ng "wireless mouse", 16 kHz);
//! * `MMSEARCH_BENCH_CATALOG`: default `~/.cache/mmsearch/demo/catalog.jsonl`; the first 32 items
//!   with a photo give the batch-32 ingest (title + first photo). Without a catalogue:
//!   `MMSEARCH_BENCH_PHOTOS` / the Vendure photo directory / synthetic 1200×900 JPEGs, with
//!   synthetic titles;
//! * `MMSEARCH_BENCH_THREADS`: ORT intra-op threads per session (default 0 = ORT's choice).
//! * `MMSEARCH_BENCH_CASES`: comma-separated subset of case names (default: all).
//! * `MMSEARCH_BENCH_SET`: the model set, `default` (MiniLM) or `multilingual` (e5-small).

use std::path::{Path, PathBuf};
use std::time::Instant;

use mmsearch::encode::{EncodeConfig, Encoders};
use mmsearch::fusion::{fuse_item, FusionConfig, ItemEvidence};

const QUERY: &str = "red running shoes";

/// Linear interpolation between closest ranks (numpy's default `percentile` method).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

struct Bench {
    only: Option<Vec<String>>,
}

impl Bench {
    fn wants(&self, case: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|c| c == case))
    }

    /// Times `f` and prints one JSON line; returns p50 in ms (NaN when the case is filtered out).
    fn run<T>(
        &self,
        case: &str,
        batch: usize,
        warmup: usize,
        n: usize,
        mut f: impl FnMut() -> T,
    ) -> f64 {
        if !self.wants(case) {
            return f64::NAN;
        }
        for _ in 0..warmup {
            std::hint::black_box(f());
        }
        let mut v: Vec<f64> = (0..n)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        v.sort_by(f64::total_cmp);
        let p50 = percentile(&v, 0.5);
        let line = serde_json::json!({
            "engine": "rust",
            "case": case,
            "batch": batch,
            "n": n,
            "p50_ms": round3(p50),
            "p95_ms": round3(percentile(&v, 0.95)),
            "mean_ms": round3(v.iter().sum::<f64>() / n as f64),
            "items_per_s": round3(batch as f64 * 1e3 / p50),
        });
        println!("{line}");
        eprintln!("  {case:<34} b{batch:<3} p50 {p50:9.2} ms");
        p50
    }
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn vendure_images() -> PathBuf {
    home().join(".cache/mmsearch/demo/vendure-create-3.7.3/package/assets/images")
}

fn dims(b: &[u8]) -> Option<(u32, u32)> {
    image::ImageReader::new(std::io::Cursor::new(b))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}

fn is_jpeg(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
}

fn sorted_jpegs(d: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(d)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| is_jpeg(p))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths
}

/// The batch-1 JPEG: `$MMSEARCH_BENCH_JPEG`, else the Vendure asset closest to 1200 px on its
/// longer side (first in name order on ties).
fn bench_jpeg() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MMSEARCH_BENCH_JPEG") {
        return Some(PathBuf::from(p));
    }
    sorted_jpegs(&vendure_images())
        .into_iter()
        .filter_map(|p| {
            let (w, h) = dims(&std::fs::read(&p).ok()?)?;
            Some(((i64::from(w.max(h)) - 1200).abs(), p))
        })
        .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)))
        .map(|(_, p)| p)
}

/// 32 ingest items (title, photo bytes): the first 32 catalogue items with a photo.
fn ingest_items() -> Vec<(String, String, Vec<u8>)> {
    let catalog = std::env::var_os("MMSEARCH_BENCH_CATALOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/mmsearch/demo/catalog.jsonl"));
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string(&catalog) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let (Some(title), Some(img)) = (
                v["title"].as_str(),
                v["images"].get(0).and_then(|x| x.as_str()),
            ) else {
                continue;
            };
            if let Ok(b) = std::fs::read(img) {
                let name = Path::new(img)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.push((title.to_string(), name, b));
            }
            if out.len() == 32 {
                return out;
            }
        }
    }
    // no catalogue: photos from a directory (or synthetic), synthetic titles
    eprintln!(
        "no catalogue at {} — falling back to photo directory / synthetic photos",
        catalog.display()
    );
    let dir = std::env::var_os("MMSEARCH_BENCH_PHOTOS")
        .map(PathBuf::from)
        .unwrap_or_else(vendure_images);
    let mut photos: Vec<(String, Vec<u8>)> = sorted_jpegs(&dir)
        .into_iter()
        .take(32)
        .filter_map(|p| {
            Some((
                p.file_name()?.to_string_lossy().into_owned(),
                std::fs::read(&p).ok()?,
            ))
        })
        .collect();
    if photos.is_empty() {
        for i in 0..32u32 {
            let img = image::RgbImage::from_fn(1200, 900, |x, y| {
                image::Rgb([
                    ((x * 7 + i * 13) % 256) as u8,
                    ((y * 5 + x / 3) % 256) as u8,
                    (((x ^ y) + i) % 256) as u8,
                ])
            });
            let mut b = Vec::new();
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut b, 85);
            img.write_with_encoder(enc).expect("jpeg encode");
            photos.push((format!("synthetic-{i}.jpg"), b));
        }
    }
    (0..32)
        .map(|i| {
            let (name, b) = photos[i % photos.len()].clone();
            (
                format!("Product number {i}: ergonomic wireless mouse with USB receiver"),
                name,
                b,
            )
        })
        .collect()
}

fn main() {
    let mut cfg = EncodeConfig {
        intra_threads: 0,
        ..EncodeConfig::default()
    };
    if let Ok(t) = std::env::var("MMSEARCH_BENCH_THREADS") {
        cfg.intra_threads = t.parse().unwrap_or(0);
    }
    match std::env::var("MMSEARCH_BENCH_SET").as_deref() {
        Ok("multilingual") => cfg.set = mmsearch::encode::ModelSet::Multilingual,
        Ok("default") | Err(_) => {}
        Ok(other) => panic!("MMSEARCH_BENCH_SET={other}: use default or multilingual"),
    }
    let b = Bench {
        only: std::env::var("MMSEARCH_BENCH_CASES")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.split(',').map(|c| c.trim().to_string()).collect()),
    };
    let t = Instant::now();
    let enc = Encoders::load(&cfg).unwrap_or_else(|e| panic!("load: {e} (run models/setup.sh)"));
    eprintln!("rust: load (with sha256 verification) {:.0} ms, intra_threads {} (0 = ORT default), fast_jpeg {}",
        t.elapsed().as_secs_f64() * 1e3, cfg.intra_threads, cfg.fast_jpeg);
    for m in enc.models() {
        eprintln!(
            "  {} {:?} on {} dim {}",
            m.id, m.kind, m.provider_in_use, m.dim
        );
    }
    let models = mmsearch::encode::default_model_dir();

    // ---- batch 1 ----
    b.run("text_query", 1, 5, 50, || {
        enc.embed_queries(&[QUERY]).expect("q")
    });

    let jpg_path = bench_jpeg().expect("no JPEG: set MMSEARCH_BENCH_JPEG");
    let jpg = std::fs::read(&jpg_path).expect("read jpeg");
    let (jw, jh) = dims(&jpg).expect("jpeg dims");
    eprintln!(
        "  JPEG {} {jw}x{jh} ({} bytes)",
        jpg_path.display(),
        jpg.len()
    );
    b.run("image_jpeg", 1, 3, 30, || {
        enc.embed_images(&[&jpg]).expect("jpg")
    });
    let prep = enc.image_encoder().preprocess_config().clone();
    let full = mmsearch::encode::image::PreprocessConfig {
        fast_jpeg: false,
        ..prep.clone()
    };
    b.run("image_jpeg_decode_preprocess", 1, 3, 30, || {
        mmsearch::encode::image::preprocess_bytes(&jpg, &prep).expect("p")
    });
    b.run("image_jpeg_decode_preprocess_full", 1, 3, 30, || {
        mmsearch::encode::image::preprocess_bytes(&jpg, &full).expect("p")
    });
    let x = mmsearch::encode::image::preprocess_bytes(&jpg, &prep).expect("p");
    b.run("image_model_bridge", 1, 3, 30, || {
        enc.embed_image_tensor(&x, 1).expect("t")
    });

    let png_path = std::env::var_os("MMSEARCH_BENCH_PNG")
        .map(PathBuf::from)
        .unwrap_or_else(|| models.join("golden/img_alpha.png"));
    let png =
        std::fs::read(&png_path).expect("png (run models/setup.sh or set MMSEARCH_BENCH_PNG)");
    let (pw, ph) = dims(&png).expect("png dims");
    eprintln!(
        "  PNG {} {pw}x{ph} ({} bytes)",
        png_path.display(),
        png.len()
    );
    b.run("image_png", 1, 3, 30, || {
        enc.embed_images(&[&png]).expect("png")
    });

    if let Some(s) = enc.speech_encoder() {
        let wav_path = std::env::var_os("MMSEARCH_BENCH_WAV")
            .map(PathBuf::from)
            .unwrap_or_else(|| models.join("golden/voice.wav"));
        let wav =
            std::fs::read(&wav_path).expect("wav (run models/setup.sh or set MMSEARCH_BENCH_WAV)");
        let tr = enc.transcribe(&wav).expect("voice");
        eprintln!(
            "  WAV {} {:.2} s -> {:?} (no_speech_prob {:.3})",
            wav_path.display(),
            tr.audio_seconds,
            tr.text,
            tr.no_speech_prob
        );
        b.run("voice", 1, 2, 10, || enc.transcribe(&wav).expect("voice"));
        let pcm = mmsearch::encode::audio::wav::decode_wav(&wav, 30.0).expect("wav");
        b.run("voice_log_mel", 1, 2, 10, || s.log_mel(&pcm.samples));
        let mel = s.log_mel(&pcm.samples);
        b.run("voice_encoder_decoder", 1, 2, 10, || {
            s.decode_mel(&mel).expect("dec")
        });
    } else {
        eprintln!("  no speech model configured: voice cases skipped");
    }

    // ---- ingest, batch 32 ----
    let items = ingest_items();
    let mean_side = items
        .iter()
        .filter_map(|(_, _, b)| dims(b))
        .map(|(w, h)| f64::from(w.max(h)))
        .sum::<f64>()
        / items.len() as f64;
    eprintln!(
        "  ingest: {} items, photos mean longer side {mean_side:.0} px, first {:?} / {}",
        items.len(),
        items[0].0,
        items[0].1
    );
    let titles: Vec<&str> = items.iter().map(|(t, _, _)| t.as_str()).collect();
    let imgs: Vec<&[u8]> = items.iter().map(|(_, _, b)| b.as_slice()).collect();
    let n = items.len();
    b.run("ingest_titles", n, 1, 5, || {
        enc.embed_texts(&titles).expect("texts")
    });
    b.run("ingest_photos", n, 1, 5, || {
        enc.embed_images(&imgs).expect("images")
    });
    // The ingest path's compute: one batched call per tower, then `fusion::fuse_item` per item
    // (what the Python reference's "fused" case does).
    let fc = FusionConfig::default();
    b.run("ingest_fused", n, 1, 5, || {
        let t = enc.embed_texts(&titles).expect("texts");
        let p = enc.embed_images(&imgs).expect("images");
        let fused: Vec<_> = t
            .iter()
            .zip(&p)
            .map(|(t, p)| {
                let ev = ItemEvidence {
                    text: Some(t),
                    photo_text_space: vec![&p.shared],
                    photo_visual: p.visual.as_deref().into_iter().collect(),
                    ..Default::default()
                };
                fuse_item(&ev, fc.weights(), fc.video_weights())
            })
            .collect();
        fused
    });
    // The whole server-side ingest path, in process: the engine's ingester (validation, the
    // dynamic batcher, fusion, one WAL-synced group write) on a temporary data directory.
    ingest_engine(&b, enc, &items);
}

fn ingest_engine(b: &Bench, enc: Encoders, items: &[(String, String, Vec<u8>)]) {
    use mmsearch::engine::{Engine, EngineConfig};
    use mmsearch::model::{Item, NewItem};
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = EngineConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let engine = rt
        .block_on(Engine::open(config, Some(std::sync::Arc::new(enc))))
        .expect("engine");
    let group = || -> Vec<NewItem> {
        items
            .iter()
            .enumerate()
            .map(|(i, (title, _, photo))| NewItem {
                item: Item {
                    id: format!("bench-{i}"),
                    title: title.clone(),
                    ..Default::default()
                },
                images: vec![photo.clone()],
                ..Default::default()
            })
            .collect()
    };
    b.run("ingest_engine", items.len(), 1, 5, || {
        let out = rt
            .block_on(engine.ingester().write_group(group()))
            .expect("write");
        assert!(out.rejected.is_empty(), "{:?}", out.rejected.first());
    });
}
