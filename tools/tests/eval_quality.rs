//! Retrieval-quality regression test: runs the `ci` evaluation profile (Vendure names and
//! paraphrases over text-only / bridge-only / fused items, Tux Paint caption→image and
//! image→image, 500 Fashion-MNIST images, 14 espeak-ng and 8 human voice clips) through the real
//! encoders and the embedded engine, and fails if any metric is more than the recorded tolerance
//! (0.02) below `tools/tests/data/eval_baseline.json`.
//!
//! Needs the models (`models/setup.sh`) and the data (`deploy/eval/fetch_eval.py`; `deploy/test.sh`
//! runs both). Missing either fails the test with the command to run; it never skips.
//! Re-record after an intended change with
//! `mmsearch-eval --profile ci --write-baseline tools/tests/data/eval_baseline.json`.

// The encoder helpers of the server's own tests (models directory, ONNX Runtime library).
#[path = "../../tests/common/encode.rs"]
mod encode_common;

use mmsearch::config::Config;
use mmsearch::encode::Encoders;
use mmsearch_tools::eval::report::Baseline;
use mmsearch_tools::eval::{data::DataDir, EvalOptions};
use std::sync::Arc;

#[test]
fn retrieval_quality_does_not_regress() {
    let baseline_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/eval_baseline.json");
    let baseline: Baseline = serde_json::from_str(
        &std::fs::read_to_string(&baseline_path)
            .unwrap_or_else(|e| panic!("{}: {e}", baseline_path.display())),
    )
    .expect("baseline JSON");
    let data = DataDir::locate(None).unwrap_or_else(|e| panic!("{e}"));
    let mut config = Config::default();
    config.encode = encode_common::config();
    let encoders =
        Encoders::load(&config.encode).unwrap_or_else(|e| panic!("loading encoders: {e}"));
    let opts = EvalOptions::ci(data, config);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt
        .block_on(mmsearch_tools::eval::run(&opts, Arc::new(encoders)))
        .unwrap_or_else(|e| panic!("evaluation: {e}"));
    println!("{}", report.table());

    // The run must have measured what the baseline records (an empty report cannot pass).
    assert!(
        baseline.metrics.len() >= 30,
        "baseline has only {} metrics",
        baseline.metrics.len()
    );
    let bad = baseline.regressions(&report);
    assert!(
        bad.is_empty(),
        "{} metric(s) regressed against {} (tolerance {}):\n  {}",
        bad.len(),
        baseline_path.display(),
        baseline.tolerance,
        bad.join("\n  ")
    );
}
