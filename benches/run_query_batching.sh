#!/usr/bin/env bash
# Text-query throughput with and without query batching (issue #12), side by side in one run:
# one server on the Vendure demo catalogue, restarted with `[encode.query_batch] max_batch = 0`
# (each query its own model call: the behaviour before batching) and with the default
# (`max_batch = 32`, `max_wait_ms = 0`), alternating ROUNDS times; `mmsearch-load --kind text`
# (default mode: HYBRID) at concurrency 1, 8, 32 in each.
#
#   benches/run_query_batching.sh          # needs models/setup.sh and the demo catalogue
# Env: CELL_SECONDS (default 5), ROUNDS (default 2), LOAD_WORK (default ~/.cache/mmsearch/batchbench).
# Results: JSON lines in $LOAD_WORK/results.jsonl (also on stdout), each tagged "batching".
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mmsearch-target}
CELL=${CELL_SECONDS:-5}
ROUNDS=${ROUNDS:-2}
WORK=${LOAD_WORK:-$HOME/.cache/mmsearch/batchbench}
DEMO=${MMSEARCH_DEMO:-$HOME/.cache/mmsearch/demo}
LISTEN=127.0.0.1:29898
OUT=$WORK/results.jsonl

source benches/lib.sh
cargo "${OPT3_BUILD[@]}" -p mmsearch -p mmsearch-tools --bin mmsearch --bin mmsearch-load
BIN=$CARGO_TARGET_DIR/release
fresh_demo_work
printf '[encode.query_batch]\nmax_batch = 0\n' > "$WORK/off.toml"
printf '[encode.query_batch]\nmax_batch = 32\nmax_wait_ms = 0\n' > "$WORK/on.toml"

machine | tee "$OUT"
for round in $(seq 1 "$ROUNDS"); do
  for mode in off on; do
    start_demo_server --config "$WORK/$mode.toml"
    "$BIN/mmsearch-load" --server "http://$LISTEN" --kind text --concurrency 1,8,32 --seconds "$CELL" \
      | sed "s/^{/{\"measure\":\"load\",\"batching\":\"$mode\",\"round\":$round,\"load1\":\"$(cut -d' ' -f1 /proc/loadavg)\",/" \
      | tee -a "$OUT"
    stop_server
  done
done
printf '{"measure":"machine_end","load":"%s"}\n' "$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"
