//! Encoder latency / throughput on this machine (not a criterion bench: prints medians).
//!
//!     cargo bench --bench encode            # MMSEARCH_MODELS / ORT_DYLIB_PATH as for the tests
//!     MMSEARCH_BENCH_PHOTOS=/dir/of/jpegs cargo bench --bench encode
//!
//! Photos: `$MMSEARCH_BENCH_PHOTOS`, else the Vendure demo photos if the core's demo fetched them,
//! else synthetic 1200×900 JPEGs (decode cost is about size, not content).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mmsearch::encode::{EncodeConfig, Encoders};
use mmsearch::fuse::{encode_and_fuse, FusionConfig, ItemContent};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(n: usize, mut f: impl FnMut() -> T) -> Duration {
    let _ = f(); // warm-up
    median((0..n).map(|_| {
        let t = Instant::now();
        std::hint::black_box(f());
        t.elapsed()
    }).collect())
}

fn ms(d: Duration) -> String {
    format!("{:8.2} ms", d.as_secs_f64() * 1e3)
}

fn photos() -> Vec<(String, Vec<u8>)> {
    let dir = std::env::var_os("MMSEARCH_BENCH_PHOTOS").map(PathBuf::from).or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from)?;
        let d = home.join(".cache/mmsearch/demo/vendure-create-3.7.3/package/assets/images");
        d.is_dir().then_some(d)
    });
    let mut out = Vec::new();
    if let Some(d) = dir {
        if let Ok(rd) = std::fs::read_dir(&d) {
            let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| {
                p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
            }).collect();
            paths.sort();
            for p in paths.into_iter().take(32) {
                if let Ok(b) = std::fs::read(&p) {
                    out.push((p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), b));
                }
            }
        }
    }
    if out.is_empty() {
        for i in 0..32u32 {
            let img = image::RgbImage::from_fn(1200, 900, |x, y| {
                image::Rgb([((x * 7 + i * 13) % 256) as u8, ((y * 5 + x / 3) % 256) as u8, (((x ^ y) + i) % 256) as u8])
            });
            let mut b = Vec::new();
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut b, 85);
            img.write_with_encoder(enc).expect("jpeg encode");
            out.push((format!("synthetic-{i}.jpg"), b));
        }
    }
    out
}

fn main() {
    let mut cfg = EncodeConfig { intra_threads: 0, ..EncodeConfig::default() };
    if let Ok(t) = std::env::var("MMSEARCH_BENCH_THREADS") {
        cfg.intra_threads = t.parse().unwrap_or(0);
    }
    let t = Instant::now();
    let enc = Encoders::load(&cfg).unwrap_or_else(|e| panic!("load: {e} (run models/setup.sh)"));
    println!("load (with sha256 verification): {}", ms(t.elapsed()));
    for m in enc.models() {
        println!("  {} {:?} on {} dim {}", m.id, m.kind, m.provider_in_use, m.dim);
    }
    let photos = photos();
    let dims: Vec<(u32, u32)> = photos.iter().filter_map(|(_, b)| image::ImageReader::new(std::io::Cursor::new(b)).with_guessed_format().ok()?.into_dimensions().ok()).collect();
    let avg_px = dims.iter().map(|&(w, h)| f64::from(w.max(h))).sum::<f64>() / dims.len().max(1) as f64;
    println!("photos: {} (mean longer side {avg_px:.0} px, first {})", photos.len(), photos[0].0);

    let n = 30;
    println!("\n-- batch 1 (median of {n}) --");
    println!("text query           {}", ms(time(n, || enc.embed_queries(&["red running shoes"]).expect("q"))));
    // the photo closest to 1200 px on its longer side
    let (pi, _) = dims.iter().enumerate().min_by_key(|(_, &(w, h))| (i64::from(w.max(h)) - 1200).abs()).expect("photos");
    let jpg = &photos[pi].1;
    println!("image JPEG {:>4}x{:<4}  {}  (fast DCT-scaled decode)", dims[pi].0, dims[pi].1, ms(time(n, || enc.embed_images(&[jpg]).expect("jpg"))));
    let prep = enc.image_encoder().preprocess_config().clone();
    let full = mmsearch::encode::image::PreprocessConfig { fast_jpeg: false, ..prep.clone() };
    println!("  decode+preprocess only: fast {}  full {}",
        ms(time(n, || mmsearch::encode::image::preprocess_bytes(jpg, &prep).expect("p"))),
        ms(time(n, || mmsearch::encode::image::preprocess_bytes(jpg, &full).expect("p"))));
    let x = mmsearch::encode::image::preprocess_bytes(jpg, &prep).expect("p");
    println!("  model + bridge only:    {}", ms(time(n, || enc.embed_image_tensor(&x, 1).expect("t"))));
    let models = mmsearch::encode::default_model_dir();
    let png = std::fs::read(models.join("golden/img_alpha.png")).expect("golden png (run models/setup.sh)");
    println!("image PNG 320x200 RGBA {}", ms(time(n, || enc.embed_images(&[&png]).expect("png"))));
    if enc.speech_encoder().is_some() {
        let wav = std::fs::read(models.join("golden/voice.wav")).expect("golden wav");
        let nv = 10;
        let tr = enc.transcribe(&wav).expect("voice");
        println!("voice {:.2} s WAV      {}  -> {:?}", tr.audio_seconds, ms(time(nv, || enc.transcribe(&wav).expect("voice"))), tr.text);
        let s = enc.speech_encoder().expect("speech");
        let pcm = mmsearch::encode::audio::wav::decode_wav(&wav, 30.0).expect("wav");
        let mel = s.log_mel(&pcm.samples);
        println!("  log-mel only:           {}", ms(time(nv, || s.log_mel(&pcm.samples))));
        println!("  encoder+decoder only:   {}", ms(time(nv, || s.decode_mel(&mel).expect("dec"))));
    }

    println!("\n-- ingest, batch 32 --");
    let titles: Vec<String> = (0..32).map(|i| format!("Product number {i}: ergonomic wireless mouse with USB receiver")).collect();
    let refs: Vec<&str> = titles.iter().map(String::as_str).collect();
    let nb = 5;
    let tt = time(nb, || enc.embed_texts(&refs).expect("texts"));
    println!("32 titles            {}  = {:7.1} texts/s", ms(tt), 32.0 / tt.as_secs_f64());
    let imgs: Vec<&[u8]> = (0..32).map(|i| photos[i % photos.len()].1.as_slice()).collect();
    let ti = time(nb, || enc.embed_images(&imgs).expect("images"));
    println!("32 photos            {}  = {:7.1} images/s", ms(ti), 32.0 / ti.as_secs_f64());
    let items: Vec<ItemContent> = (0..32).map(|i| ItemContent { title: refs[i], images: vec![imgs[i]], ..Default::default() }).collect();
    let fc = FusionConfig::default();
    let tf = time(nb, || encode_and_fuse(&enc, &fc, &items).expect("fuse"));
    println!("32 items (title+photo, fused) {}  = {:7.1} items/s", ms(tf), 32.0 / tf.as_secs_f64());
}
