#!/usr/bin/env bash
# Scale run (issue #5 §3): a fresh server takes N synthetic clustered items (default
# 1,000,000 x 384-d, cosine) over streaming Upsert, builds one generation, then is measured:
# bytes per item on disk and in memory, rebuild time, cold start (page cache dropped and warm),
# the same queries through the index, the collection, the in-process pipeline and gRPC, and
# closed-loop vector load at concurrency 1, 8, 32, 128.
#
#   benches/run_scale.sh                   # N=1000000
#   N=20000 benches/run_scale.sh           # a quick check of the whole path
#
# Env: N, DIM, CLUSTERS, STREAMS, SCALE_WORK (data + results, default ~/.cache/mmsearch/scale/n$N),
#      KEEP_DATA=1 (reuse an existing data dir: skip ingest + rebuild, measure only),
#      DROP_CACHES=0 (do not drop the page cache; needs root otherwise).
# Results: one JSON object per measurement in $SCALE_WORK/results.jsonl (also on stdout).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mmsearch-target}
N=${N:-1000000}
DIM=${DIM:-384}
CLUSTERS=${CLUSTERS:-1000}
STREAMS=${STREAMS:-2}
WORK=${SCALE_WORK:-$HOME/.cache/mmsearch/scale/n$N}
DATA=$WORK/data
OUT=$WORK/results.jsonl
LISTEN=127.0.0.1:29898   # below the ephemeral port range (see mmsearch-scale measure --listen)
GEN=(--n "$N" --dim "$DIM" --clusters "$CLUSTERS")

source benches/lib.sh
cargo "${OPT3_BUILD[@]}" -p mmsearch -p mmsearch-tools --bin mmsearch --bin mmsearch-scale --bin mmsearch-load
BIN=$CARGO_TARGET_DIR/release
mkdir -p "$WORK"
CONFIG=$WORK/mmsearch.toml
cat > "$CONFIG" <<TOML
[[spaces]]
name = "shared"
dim = $DIM
metric = "cosine"

[index]
m = 16
ef_construction = 200
ef_search = 64
# Bulk load: no automatic rebuild while the catalogue streams in; one explicit rebuild after.
max_fresh = $((N + 1))
TOML

log() { echo "$*" | tee -a "$OUT"; }
du_bytes() { du -sb "$1" 2>/dev/null | cut -f1; }

if [ -z "${KEEP_DATA:-}" ]; then
  rm -rf "$DATA"
  : > "$OUT"
  machine | tee -a "$OUT"
  start_server "$WORK/serve.out" "$WORK/serve.log" --config "$CONFIG" --data-dir "$DATA" --listen "$LISTEN" --no-models --insecure-no-auth
  "$BIN/mmsearch-scale" ingest --server "http://$LISTEN" "${GEN[@]}" --streams "$STREAMS" | tee -a "$OUT"
  "$BIN/mmsearch-scale" rebuild --server "http://$LISTEN" --pid "$SERVER" | tee -a "$OUT"
  stop_server
  gen_dir=$(ls -d "$DATA"/index/gen-* | tail -1)
  log "$(printf '{"measure":"disk","items":%s,"data_dir_bytes":%s,"store_bytes":%s,"generation_bytes":%s,"generation":"%s","files":"%s"}' \
    "$N" "$(du_bytes "$DATA")" "$(du_bytes "$DATA/store")" "$(du_bytes "$gen_dir")" "$(basename "$gen_dir")" \
    "$(cd "$gen_dir" && ls -l | awk 'NR>1 {printf "%s=%s ", $9, $5}')")"
fi

drop=(--drop-caches); [ "${DROP_CACHES:-1}" = 0 ] && drop=()
machine | tee -a "$OUT"
# Cold (page cache dropped before each open), then again with the page cache warm.
"$BIN/mmsearch-scale" measure --config "$CONFIG" --data-dir "$DATA" --server-bin "$BIN/mmsearch" --listen "$LISTEN" \
  "${GEN[@]}" "${drop[@]}" --server-log "$WORK/measure-server.log" | tee -a "$OUT"
"$BIN/mmsearch-scale" measure --config "$CONFIG" --data-dir "$DATA" --server-bin "$BIN/mmsearch" --listen "$LISTEN" \
  "${GEN[@]}" --skip-direct --server-log "$WORK/measure-server-warm.log" | tee -a "$OUT"
# Closed-loop vector queries at rising concurrency against the whole index.
start_server "$WORK/load-server.out" "$WORK/load-server.log" --config "$CONFIG" --data-dir "$DATA" --listen "$LISTEN" --no-models --insecure-no-auth
"$BIN/mmsearch-load" --server "http://$LISTEN" --kind vector --dim "$DIM" --concurrency 1,8,32,128 --seconds 10 \
  | sed 's/^{/{"measure":"load",/' | tee -a "$OUT"
printf '{"measure":"load_server","vmrss_mb":%s,"rss_anon_mb":%s,"rss_file_mb":%s}\n' $(awk '/^(VmRSS|RssAnon|RssFile):/ {printf "%s ", $2/1024}' /proc/$SERVER/status) | tee -a "$OUT"
stop_server
machine | tee -a "$OUT"
