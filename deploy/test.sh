#!/usr/bin/env bash
# Runs every test of mmsearch on a fresh Debian 12 machine: installs prerequisites, builds the
# default models (cached in ~/.cache/mmsearch/models) and the retrieval-quality data (cached in
# ~/.cache/mmsearch/eval, for tools/tests/eval_quality.rs) while cargo compiles, then `cargo test`
# for the workspace and the Python client's tests (clients/python/test.sh: a venv, the stubs
# check, mypy, pytest). Prints each stage's minutes at the end.
# Everything builds with the release profile, as deploy/demo.sh and the benchmarks do: after the
# demo, this reuses its RocksDB build. The cargo target dir lives outside the clone so later runs
# reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mmsearch-target}"
source deploy/stages.sh
trap stages_report EXIT

stage "apt + pip prerequisites" deploy/install-deps.sh --browser
# The models and the eval data need no compiler: they are made while cargo compiles.
stage_bg models models/setup.sh
# The video tests' clips need the demo photos, which the eval data step fetches.
stage_bg eval-data sh -c 'deploy/eval/fetch_eval.py && deploy/video/make-test-videos.sh'
stage "cargo build (release, tests)" cargo test --release --workspace --no-run
stage_wait models
stage_wait eval-data
stage "cargo test" cargo test --release --workspace --no-fail-fast -- --test-threads="${MMSEARCH_TEST_THREADS:-2}" "$@"
# The Python client: stubs vs proto/, mypy --strict, pytest against the server just built.
stage "python client tests" env MMSEARCH_BIN="$CARGO_TARGET_DIR/release/mmsearch" clients/python/test.sh
