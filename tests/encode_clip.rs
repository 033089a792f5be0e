//! The clip_text / clip_image path with the tiny random CLIP pair from `models/make_tiny_clip.py`.

#[path = "common/encode.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use mmsearch::encode::{EncodeConfig, EncodeError, Encoders};

fn python() -> PathBuf {
    let venv = models_dir().join(".venv/bin/python3");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

fn make_tiny_clip(out: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/make_tiny_clip.py");
    assert!(script.is_file(), "{} missing", script.display());
    let st = Command::new(python())
        .arg(&script)
        .arg(out)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "running {}: {e} (needs numpy + onnx; run models/setup.sh)",
                script.display()
            )
        });
    assert!(st.success(), "make_tiny_clip.py failed: {st}");
}

#[test]
fn tiny_clip_end_to_end() {
    let tmp = tempfile::tempdir().expect("tmpdir");
    make_tiny_clip(tmp.path());
    let cfg = EncodeConfig {
        model_dir: tmp.path().to_path_buf(),
        ort_dylib: Some(ort_dylib()),
        text_model: Some("tiny-clip-text".into()),
        image_model: "tiny-clip-image".into(),
        speech_model: None,
        intra_threads: 1,
        ..EncodeConfig::default()
    };
    let enc = Encoders::load(&cfg).unwrap_or_else(|e| panic!("load tiny clip: {e}"));
    let g: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("tiny-clip-golden.json")).expect("golden"),
    )
    .expect("json");
    let dim = enc.shared_dim();
    assert_eq!(dim, 32);
    assert_eq!(enc.visual_dim(), None);

    // text: same ids and vectors as the numpy/ORT reference
    let texts: Vec<&str> = g["texts"]
        .as_array()
        .expect("texts")
        .iter()
        .map(|t| t.as_str().expect("str"))
        .collect();
    let toks = enc.text_encoder().tokenize(&texts).expect("tokenize");
    for (t, want) in toks.iter().zip(g["input_ids"].as_array().expect("ids")) {
        let want: Vec<u32> = want
            .as_array()
            .expect("row")
            .iter()
            .map(|x| x.as_u64().expect("id") as u32)
            .collect();
        assert_eq!(t.get_ids(), &want[..]);
    }
    let tv = enc.embed_texts(&texts).expect("text");
    let tol = g["tolerance"].as_f64().unwrap_or(1e-5) as f32;
    for (v, want) in tv.iter().zip(g["text_embeds"].as_array().expect("embeds")) {
        assert_eq!(v.len(), dim);
        assert!(unit(v));
        assert!(max_abs(v, &floats(want)) <= tol.max(1e-5));
    }
    // queries are not templated for CLIP
    assert_eq!(enc.embed_queries(&texts[..1]).expect("q")[0], tv[0]);

    // image: golden tensor, then real files; deterministic, unit, no visual vector
    let s = enc.image_encoder().preprocess_config().size as usize;
    let x: Vec<f32> = (0..3 * s * s)
        .map(|i| ((i % 17) as f32 - 8.0) / 8.0)
        .collect();
    let iv = enc.embed_image_tensor(&x, 1).expect("tensor").remove(0);
    assert!(max_abs(&iv.shared, &floats(&g["image_embeds"][0])) <= tol.max(1e-5));
    let png = std::fs::read(models_dir().join("golden/img_alpha.png")).expect("png");
    let jpg = std::fs::read(models_dir().join("golden/img_rings.jpg")).expect("jpg");
    let a = enc.embed_images(&[&png, &jpg]).expect("images");
    let b = enc.embed_images(&[&png, &jpg]).expect("images again");
    assert_eq!(a, b, "image vectors must be deterministic");
    for v in &a {
        assert_eq!(v.shared.len(), dim);
        assert!(unit(&v.shared));
        assert!(v.visual.is_none());
    }
    assert_eq!(
        enc.embed_texts(&texts).expect("again"),
        tv,
        "text vectors must be deterministic"
    );

    // fusion works in the CLIP space too (no visual part)
    let text = enc
        .embed_texts(&["red running shoe"])
        .expect("text")
        .remove(0);
    let photo = enc.embed_images(&[&png]).expect("photo").remove(0);
    let evidence = mmsearch::fusion::ItemEvidence {
        text: Some(&text),
        photo_text_space: vec![&photo.shared],
        photo_visual: photo.visual.as_deref().into_iter().collect(),
        ..Default::default()
    };
    let f = mmsearch::fusion::fuse_item(&evidence, Default::default(), Default::default());
    assert!(f.text.as_deref().is_some_and(unit) && f.visual.is_none());
}

#[test]
fn clip_and_bridge_towers_cannot_be_mixed() {
    let tmp = tempfile::tempdir().expect("tmpdir");
    make_tiny_clip(tmp.path());
    // put the real MiniLM next to the tiny CLIP image tower
    let link = tmp.path().join("text-minilm-l6-v2");
    std::os::unix::fs::symlink(models_dir().join("text-minilm-l6-v2"), &link).expect("symlink");
    let cfg = EncodeConfig {
        model_dir: tmp.path().to_path_buf(),
        ort_dylib: Some(ort_dylib()),
        image_model: "tiny-clip-image".into(),
        speech_model: None,
        verify_checksums: false,
        ..EncodeConfig::default()
    };
    match Encoders::load(&cfg) {
        Err(EncodeError::Config(m)) => assert!(m.contains("cannot be paired"), "{m}"),
        Err(e) => panic!("expected Config error, got {e}"),
        Ok(_) => panic!("text + clip_image must be rejected"),
    }
}

#[test]
fn cuda_request_falls_back_or_runs() {
    // With the CPU onnxruntime build the CUDA EP cannot register: the load must still succeed, on
    // CPU, and say so. On a GPU host with the GPU build it runs on CUDA; vectors must agree either way.
    let tmp = tempfile::tempdir().expect("tmpdir");
    make_tiny_clip(tmp.path());
    let base = EncodeConfig {
        model_dir: tmp.path().to_path_buf(),
        ort_dylib: Some(ort_dylib()),
        text_model: Some("tiny-clip-text".into()),
        image_model: "tiny-clip-image".into(),
        speech_model: Some(String::new()), // "" disables speech
        ..EncodeConfig::default()
    };
    let cpu = Encoders::load(&base).expect("cpu load");
    let cuda = Encoders::load(&EncodeConfig {
        provider: mmsearch::encode::Provider::Cuda,
        ..base
    })
    .expect("cuda request must not fail");
    for m in cuda.models() {
        eprintln!("{} runs on {}", m.id, m.provider_in_use);
    }
    let a = cpu.embed_texts(&["red running shoe"]).expect("cpu");
    let b = cuda.embed_texts(&["red running shoe"]).expect("cuda");
    assert!(max_abs(&a[0], &b[0]) < 1e-4);
    assert!(
        matches!(
            cuda.transcribe(b"RIFF"),
            Err(EncodeError::ModelUnavailable(_))
        ),
        "speech disabled by \"\""
    );
}
