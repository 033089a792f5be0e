#!/usr/bin/env bash
# Recommendation at scale (issue #11): for each catalogue size, a fresh server takes N
# synthetic items (384-d, N/100 blobs) over streaming Upsert and builds one generation; then
# synthetic shoppers' interactions stream in (events/s), Train runs (EASE up to
# recommend.ease_max_items items with interactions, item-kNN beyond), and RecommendForUser is
# timed over gRPC at concurrency 1, for shoppers with a history and without one.
#
#   benches/run_recommend.sh                      # N in 1682 100000
#   SIZES="20000" USERS=2000 benches/run_recommend.sh   # a quick check of the whole path
#
# Env: SIZES, USERS (default 20000), EVENTS (per shopper, default 25), REQUESTS (default 1000),
#      REC_WORK (default ~/.cache/mmsearch/recommend-scale).
# Results: one JSON object per measurement in $REC_WORK/results.jsonl (also on stdout).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mmsearch-target}
SIZES=${SIZES:-1682 100000}
USERS=${USERS:-20000}
EVENTS=${EVENTS:-25}
REQUESTS=${REQUESTS:-1000}
WORK=${REC_WORK:-$HOME/.cache/mmsearch/recommend-scale}
OUT=$WORK/results.jsonl
LISTEN=127.0.0.1:29899

source benches/lib.sh
cargo "${OPT3_BUILD[@]}" -p mmsearch -p mmsearch-tools --bin mmsearch --bin mmsearch-scale
BIN=$CARGO_TARGET_DIR/release
mkdir -p "$WORK"
: > "$OUT"
machine | tee -a "$OUT"
for N in $SIZES; do
  CLUSTERS=$(( N / 100 > 0 ? N / 100 : 1 ))
  GEN=(--n "$N" --clusters "$CLUSTERS")
  DATA=$WORK/n$N/data
  rm -rf "$DATA"; mkdir -p "$WORK/n$N"
  CONFIG=$WORK/n$N/mmsearch.toml
  cat > "$CONFIG" <<TOML
[[spaces]]
name = "shared"
dim = 384
metric = "cosine"

[index]
max_fresh = $((N + 1))
TOML
  start_server "$WORK/n$N/serve.out" "$WORK/n$N/serve.log" --config "$CONFIG" --data-dir "$DATA" --listen "$LISTEN" --no-models --insecure-no-auth
  "$BIN/mmsearch-scale" ingest --server "http://$LISTEN" "${GEN[@]}" | tee -a "$OUT"
  "$BIN/mmsearch-scale" rebuild --server "http://$LISTEN" --pid "$SERVER" | tee -a "$OUT"
  "$BIN/mmsearch-scale" recommend --server "http://$LISTEN" "${GEN[@]}" --users "$USERS" --events-per-user "$EVENTS" \
    --requests "$REQUESTS" --pid "$SERVER" | tee -a "$OUT"
  stop_server
  machine | tee -a "$OUT"
done
