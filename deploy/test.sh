#!/usr/bin/env bash
# Runs every test of mmsearch on a fresh Debian 12 machine: installs prerequisites, builds the
# default models (cached in ~/.cache/mmsearch/models) and the retrieval-quality data (cached in
# ~/.cache/mmsearch/eval, for tools/tests/eval_quality.rs), then `cargo test` for the workspace and the
# Python client's tests (clients/python/test.sh: a venv, the stubs check, mypy, pytest).
# The cargo target dir lives outside the clone so later runs reuse the RocksDB build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mmsearch-target}"
deploy/install-deps.sh
models/setup.sh
deploy/eval/fetch_eval.py
deploy/video/make-test-videos.sh >/dev/null   # video tests' clips (cached; needs the demo photos)
cargo test --workspace --no-fail-fast -- --test-threads="${MMSEARCH_TEST_THREADS:-2}" "$@"
# The Python client: stubs vs proto/, mypy --strict, pytest against the server just built.
clients/python/test.sh
