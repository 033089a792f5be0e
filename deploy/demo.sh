#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a running server on the Vendure demo catalogue:
# installs prerequisites, builds the default models, fetches the catalogue (npm @vendure/create),
# builds mmsearch (the release profile, which deploy/test.sh and the benchmarks use too), starts
# it, ingests the 54 products with their photos, prints each stage's minutes, and keeps serving.
#   deploy/demo.sh                 # serves on 127.0.0.1:50051 until Ctrl-C
#   MMSEARCH_LISTEN=0.0.0.0:50051 deploy/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mmsearch-target}"
DEMO="${MMSEARCH_DEMO:-$HOME/.cache/mmsearch/demo}"
LISTEN="${MMSEARCH_LISTEN:-127.0.0.1:50051}"
METRICS="${MMSEARCH_METRICS_LISTEN:-127.0.0.1:9464}"
# Named for the RocksDB that writes it: demo data made before mmsearch linked Debian's RocksDB 7.8
# (in `$DEMO/data`, written by RocksDB 10) cannot be opened by it; the demo re-ingests anyway.
DATA="${MMSEARCH_DEMO_DATA:-$DEMO/data-rocksdb7}"

source deploy/stages.sh
trap stages_report EXIT

stage "apt + pip prerequisites" deploy/install-deps.sh
# The models and the catalogue need no compiler: they are made while cargo compiles.
stage_bg models models/setup.sh
stage_bg catalogue python3 deploy/demo/fetch_vendure.py
stage "cargo build (release)" cargo build --release --bin mmsearch
stage_wait models
stage_wait catalogue
BIN="$CARGO_TARGET_DIR/release/mmsearch"

LOG="$DEMO/server.log"
mkdir -p "$DEMO"
# The demo runs without API keys, on loopback only; production configs list [[auth.keys]].
echo "NOTE: the demo server runs with --insecure-no-auth (no API keys): anyone who can reach $LISTEN may search, ingest and rebuild."
"$BIN" serve --data-dir "$DATA" --listen "$LISTEN" --metrics-listen "$METRICS" --insecure-no-auth > "$DEMO/server.out" 2> "$LOG" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' INT TERM EXIT
started=$SECONDS
for _ in $(seq 1 600); do
  grep -q "mmsearch listening on" "$DEMO/server.out" 2>/dev/null && break
  kill -0 $SERVER 2>/dev/null || { echo "server failed to start:"; tail -20 "$LOG"; exit 1; }
  sleep 0.2
done
ADDR="http://$(sed -n 's/^mmsearch listening on //p' "$DEMO/server.out" | head -1)"
_stage_row "server start" $((SECONDS - started)) 0
echo "server up at $ADDR (log: $LOG)"

stage "ingest 54 products" "$BIN" ingest --server "$ADDR" "$DEMO/catalog.jsonl"
stage "first answer" "$BIN" search --server "$ADDR" --text "camera on a tripod" --top-k 3
"$BIN" admin --server "$ADDR" status
stages_report

cat <<MSG

mmsearch is serving the Vendure demo catalogue at $ADDR. Try, in another shell:
  $BIN search --server $ADDR --text "camera on a tripod"
  $BIN search --server $ADDR --image $DEMO/vendure-create-3.7.3/package/assets/images/<a photo>.jpg
  espeak-ng -w /tmp/q.wav "wireless mouse" && $BIN search --server $ADDR --voice /tmp/q.wav
  $BIN search --server $ADDR --text "running shoes" --price-max 100
  curl -s http://$METRICS/metrics | grep mmsearch_requests_total     # Prometheus metrics
Ctrl-C stops the server.
MSG
wait $SERVER
