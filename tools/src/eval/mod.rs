//! Retrieval-quality evaluation (issue #5, part 1) over an embedded engine.
//!
//! The data sets ship in registry packages and are prepared by `deploy/eval/fetch_eval.py`
//! ([`data`]); each suite ([`suites`]) loads them into fresh engines built from the server's own
//! collection, ingest and search code ([`engine`]) and scores the rankings ([`metrics`]). The
//! result is a [`report::Report`] (JSON + table), checked against a recorded
//! [`report::Baseline`] by `tools/tests/eval_quality.rs`. Run it with `mmsearch-eval`.

pub mod data;
pub mod engine;
pub mod metrics;
pub mod modes;
pub mod report;
pub mod suites;

use data::DataDir;
use mmsearch::config::Config;
use mmsearch::encode::Encoders;
use report::Report;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("data: {0}")]
    Data(String),
    #[error("engine: {0}")]
    Engine(String),
    #[error("search: {0}")]
    Search(String),
    #[error("io: {0}")]
    Io(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    Vendure,
    TuxPaint,
    FashionMnist,
}

#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Name recorded in the report; a baseline only applies to the profile it was recorded with.
    pub profile: String,
    pub data: DataDir,
    /// Engine config (spaces, fusion, index, encoders); `data_dir` is replaced per engine.
    pub config: Config,
    pub sets: Vec<Set>,
    /// Fashion-MNIST: gallery size (first n test images) and how many of them query image→image.
    pub fmnist_n: usize,
    pub fmnist_queries: usize,
    /// espeak-ng query sets to speak: `voice_queries`, `vendure_paraphrases`, `vendure_zh` (Mandarin
    /// voice; needs a multilingual `speech_model` to mean anything); empty = no voice on Vendure.
    pub espeak_sets: Vec<String>,
    /// The spoken language given with every voice query (a Whisper code); `None`: detected.
    pub speech_language: Option<String>,
    /// KTuberling words to play (`None` = all 71 English recordings; empty = none).
    pub ktuberling_words: Option<Vec<String>>,
    /// Fold the ingested items into an HNSW generation before querying (as the server does
    /// after `admin rebuild` or `index.max_fresh` writes); otherwise the mutable layer answers.
    pub rebuild: bool,
}

/// The words the CI profile plays: clothing and objects from the issue.
pub const CI_WORDS: [&str; 8] = [
    "hat",
    "shoe",
    "coat",
    "skirt",
    "tie",
    "sunglasses",
    "umbrella",
    "bicycle",
];

impl EvalOptions {
    /// Everything: all Vendure queries spoken, all 71 recordings, `fmnist_n` images.
    pub fn full(data: DataDir, config: Config, fmnist_n: usize) -> EvalOptions {
        EvalOptions {
            profile: "full".into(),
            data,
            config: eval_config(config, fmnist_n),
            sets: vec![Set::Vendure, Set::TuxPaint, Set::FashionMnist],
            fmnist_n,
            fmnist_queries: fmnist_n,
            espeak_sets: vec!["voice_queries".into(), "vendure_paraphrases".into()],
            ktuberling_words: None,
            speech_language: None,
            rebuild: true,
        }
    }

    /// What the regression test runs (a few minutes on 2 cores): Vendure, Tux Paint, the first
    /// 500 Fashion-MNIST images, the 14 spoken Vendure queries and 8 recorded words.
    pub fn ci(data: DataDir, config: Config) -> EvalOptions {
        let n = 500;
        EvalOptions {
            profile: "ci".into(),
            espeak_sets: vec!["voice_queries".into()],
            ktuberling_words: Some(CI_WORDS.iter().map(|w| w.to_string()).collect()),
            ..EvalOptions::full(data, config, n)
        }
    }
}

/// Zero-shot ranks every image under each class prompt, so the window must hold the gallery.
fn eval_config(mut config: Config, fmnist_n: usize) -> Config {
    let need = fmnist_n.max(1000) as u32;
    config.limits.query.max_top_k = config.limits.query.max_top_k.max(need);
    config.limits.query.max_window = config.limits.query.max_window.max(need);
    config
}

/// Runs the selected suites. Must be called inside a multi-threaded tokio runtime.
pub async fn run(opts: &EvalOptions, encoders: Arc<Encoders>) -> Result<Report, EvalError> {
    let started = Instant::now();
    let mut out = suites::Out::default();
    for set in &opts.sets {
        let t = Instant::now();
        match set {
            Set::Vendure => suites::vendure(opts, encoders.clone(), &mut out).await?,
            Set::TuxPaint => suites::tuxpaint(opts, encoders.clone(), &mut out).await?,
            Set::FashionMnist => suites::fashion_mnist(opts, encoders.clone(), &mut out).await?,
        }
        tracing::info!(set = ?set, seconds = t.elapsed().as_secs_f64(), "suite done");
    }
    Ok(Report {
        profile: opts.profile.clone(),
        date_utc: utc_now(),
        machine: machine(),
        models: encoders
            .models()
            .into_iter()
            .map(|m| format!("{} ({:?})", m.id, m.provider_in_use))
            .collect(),
        sections: out.sections,
        transcripts: out.transcripts,
        timings: out.timings,
        total_seconds: started.elapsed().as_secs_f64(),
    })
}

/// `YYYY-MM-DD HH:MM` UTC from the system clock (civil-from-days, no date crate needed).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// CPU model and core count, for the report header.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}
