#!/usr/bin/env bash
# End-to-end gRPC load (issue #5 §3): a fresh server with the default models serving the Vendure
# demo catalogue (54 products with photos), then `mmsearch-load` for vector, text, image and
# voice queries at concurrency 1, 8, 32, 128 (closed loop, CELL_SECONDS per cell).
#
#   benches/run_load.sh            # needs models/setup.sh and deploy/demo/fetch_vendure.py done
#                                  # (deploy/demo.sh does both)
# Env: CELL_SECONDS (default 5; voice gets 2x), LOAD_WORK (default ~/.cache/mmsearch/loadbench).
# Results: one JSON line per cell in $LOAD_WORK/results.jsonl (also on stdout).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mmsearch-target}
CELL=${CELL_SECONDS:-5}
WORK=${LOAD_WORK:-$HOME/.cache/mmsearch/loadbench}
DEMO=${MMSEARCH_DEMO:-$HOME/.cache/mmsearch/demo}
PHOTO=$DEMO/vendure-create-3.7.3/package/assets/images/florian-klauer-14840-unsplash.jpg
LISTEN=127.0.0.1:29897   # below the ephemeral port range
OUT=$WORK/results.jsonl

source benches/lib.sh
cargo "${OPT3_BUILD[@]}" -p mmsearch -p mmsearch-tools --bin mmsearch --bin mmsearch-load
BIN=$CARGO_TARGET_DIR/release
fresh_demo_work
espeak-ng -w "$WORK/query.wav" "wireless mouse"

start_demo_server

machine | tee "$OUT"
run() {  # kind, seconds, extra args...
  local kind=$1 secs=$2; shift 2
  "$BIN/mmsearch-load" --server "http://$LISTEN" --kind "$kind" --concurrency 1,8,32,128 --seconds "$secs" "$@" \
    | sed 's/^{/{"measure":"load",/' | tee -a "$OUT"
}
run vector "$CELL"
run text "$CELL"
run image "$CELL" --file "$PHOTO"
run voice "$((CELL * 2))" --file "$WORK/query.wav"
printf '{"measure":"machine_end","load":"%s"}\n' "$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"
