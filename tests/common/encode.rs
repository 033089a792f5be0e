//! Shared helpers for the `encode_*` integration tests (included with `#[path]`; as its own test
//! target it contains no tests).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use mmsearch::encode::{EncodeConfig, Encoders};

/// `$MMSEARCH_MODELS`, else `$HOME/.cache/mmsearch/models`. Panics (never skips) when the
/// artifacts are missing: a green run must mean the encoders were really exercised.
pub fn models_dir() -> PathBuf {
    let dir = mmsearch::encode::default_model_dir();
    let must = [
        "golden/golden.json",
        "text-minilm-l6-v2/model.toml",
        "text-multilingual-e5-small/model.toml",
        "image-effnet-lite0/model.toml",
        "whisper-tiny-en/model.toml",
    ];
    for m in must {
        assert!(
            dir.join(m).is_file(),
            "model artifact {} is missing: run `models/setup.sh` (or set MMSEARCH_MODELS to where it wrote them)",
            dir.join(m).display()
        );
    }
    dir
}

pub fn ort_dylib() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    let lib = models_dir().join("onnxruntime/lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .unwrap_or_else(|e| panic!("{}: {e} — run models/setup.sh", lib.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so"))
        })
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found.into_iter().next().unwrap_or_else(|| {
        panic!(
            "no libonnxruntime.so in {} — run models/setup.sh",
            lib.display()
        )
    })
}

pub fn config() -> EncodeConfig {
    EncodeConfig {
        model_dir: models_dir(),
        ort_dylib: Some(ort_dylib()),
        intra_threads: 2,
        ..EncodeConfig::default()
    }
}

/// The default model set, loaded once per test binary (checksums verified).
pub fn encoders() -> &'static Encoders {
    static E: OnceLock<Encoders> = OnceLock::new();
    E.get_or_init(|| Encoders::load(&config()).unwrap_or_else(|e| panic!("loading encoders: {e}")))
}

/// The multilingual set (e5-small), loaded once per test binary (checksums verified).
pub fn multilingual() -> &'static Encoders {
    static E: OnceLock<Encoders> = OnceLock::new();
    E.get_or_init(|| {
        let cfg = EncodeConfig {
            set: mmsearch::encode::ModelSet::Multilingual,
            speech_model: None,
            ..config()
        };
        Encoders::load(&cfg).unwrap_or_else(|e| panic!("loading the multilingual set: {e}"))
    })
}

pub fn golden() -> serde_json::Value {
    let p = models_dir().join("golden/golden.json");
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).expect("golden.json parses")
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn read_f32(p: &std::path::Path) -> Vec<f32> {
    let b = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Cosine similarity; 0 when either side is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    use mmsearch_index::metric::dot;
    let d = (dot(a, a) * dot(b, b)).sqrt();
    if d > 0.0 {
        dot(a, b) / d
    } else {
        0.0
    }
}

pub fn unit(v: &[f32]) -> bool {
    (v.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() < 1e-4
}

/// 16-bit PCM mono WAV.
pub fn wav_i16(samples: &[i16], rate: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    let data_len = (samples.len() * 2) as u32;
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// The Vendure demo catalogue (`deploy/demo/fetch_vendure.py`, run by deploy/test.sh);
/// `$MMSEARCH_DEMO` overrides where it lives. Panics when it is missing.
pub fn demo_catalog() -> PathBuf {
    let dir = std::env::var_os("MMSEARCH_DEMO")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/mmsearch/demo")
        });
    let catalog = dir.join("catalog.jsonl");
    assert!(
        catalog.is_file(),
        "{} missing: run deploy/demo/fetch_vendure.py (deploy/test.sh does)",
        catalog.display()
    );
    catalog
}

/// `text` spoken by espeak-ng (US English) into a WAV file at `path`.
pub fn speak(text: &str, path: &std::path::Path) {
    let st = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(path)
        .arg(text)
        .status()
        .expect("espeak-ng");
    assert!(st.success(), "espeak-ng failed");
}
