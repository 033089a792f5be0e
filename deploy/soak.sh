#!/usr/bin/env bash
# Soak run on loopback: builds the binaries (dev profile), starts a fresh server (temp data dir, small
# index.max_fresh so background rebuilds happen as well as the admin ones), runs mmsearch-soak
# for half the time, stops the server with SIGTERM (exit code must be 0), restarts it on the same
# data dir, verifies every acknowledged write survived, runs the second half, stops it again.
#
#   deploy/soak.sh 30                    # 30 minutes, --no-models
#   deploy/soak.sh 2 --with-models       # text items and text queries go through the encoders
#   deploy/soak.sh 10 --no-restart --concurrency 32
#
# Output (CSV of RSS and request counts over time, summary JSON per phase, server logs) goes to
# $SOAK_OUT (default: a new /tmp/mmsearch-soak.* directory). Exit status 0 only if every phase
# passed (no lost acknowledged write, no unexpected error) and every server exit was clean.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES="${1:?usage: deploy/soak.sh <minutes> [--with-models] [--no-restart] [--concurrency N] [--seed N] [--max-ids N]}"
shift
MODELS=--no-models
RESTART=1
CONCURRENCY=16
SEED=1
MAX_IDS=10000
while [ $# -gt 0 ]; do
  case "$1" in
    --with-models) MODELS= ;;
    --no-restart) RESTART=0 ;;
    --concurrency) CONCURRENCY="$2"; shift ;;
    --seed) SEED="$2"; shift ;;
    --max-ids) MAX_IDS="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mmsearch-target}"
# The release profile, as the demo and the tests build it (one RocksDB build for all three).
# SOAK_BIN_DIR: use mmsearch and mmsearch-soak from there instead of building (e.g. a copy, so a
# long run is not affected by later builds into the shared target dir).
if [ -n "${SOAK_BIN_DIR:-}" ]; then
  BIN="$SOAK_BIN_DIR/mmsearch"
  SOAK="$SOAK_BIN_DIR/mmsearch-soak"
else
  cargo build --release -p mmsearch -p mmsearch-tools --bin mmsearch --bin mmsearch-soak
  BIN="$CARGO_TARGET_DIR/release/mmsearch"
  SOAK="$CARGO_TARGET_DIR/release/mmsearch-soak"
fi

OUT="${SOAK_OUT:-$(mktemp -d /tmp/mmsearch-soak.XXXXXX)}"
mkdir -p "$OUT"
DATA="$OUT/data"
rm -rf "$DATA" "$OUT/state.json" "$OUT/soak.csv"
cat > "$OUT/mmsearch.toml" <<'TOML'
[[spaces]]
name = "shared"
dim = 384
metric = "cosine"

[index]
min_graph_size = 256
max_fresh = 2000          # small: the mutable layer is folded into a new generation often
TOML

# Servers built after access control landed refuse to start without keys unless told.
AUTH=()
if "$BIN" serve --help 2>/dev/null | grep -q -- --insecure-no-auth; then
  AUTH=(--insecure-no-auth)
fi

SERVER=
start_server() {
  local n="$1"
  : > "$OUT/server$n.out"
  "$BIN" serve --config "$OUT/mmsearch.toml" --data-dir "$DATA" --listen 127.0.0.1:0 $MODELS "${AUTH[@]}" \
    > "$OUT/server$n.out" 2> "$OUT/server$n.log" &
  SERVER=$!
  for _ in $(seq 1 1200); do
    grep -q "mmsearch listening on" "$OUT/server$n.out" 2>/dev/null && break
    kill -0 "$SERVER" 2>/dev/null || { echo "server failed to start:"; tail -20 "$OUT/server$n.log"; exit 1; }
    sleep 0.1
  done
  ADDR="http://$(sed -n 's/^mmsearch listening on //p' "$OUT/server$n.out" | head -1)"
  echo "server $n (pid $SERVER) at $ADDR"
}

stop_server() {
  kill -TERM "$SERVER"
  local rc=0
  wait "$SERVER" || rc=$?
  SERVER=
  echo "server stopped with SIGTERM, exit code $rc"
  [ "$rc" -eq 0 ] || FAILED=1
}
trap '[ -n "$SERVER" ] && kill -TERM "$SERVER" 2>/dev/null; wait 2>/dev/null || true' EXIT

FAILED=0
TOTAL=$(awk "BEGIN { printf \"%d\", $MINUTES * 60 }")
if [ "$RESTART" -eq 1 ]; then
  PHASES=2
  FIRST=$((TOTAL / 2))
else
  PHASES=1
  FIRST=$TOTAL
fi

for phase in $(seq 1 $PHASES); do
  start_server "$phase"
  SECS=$FIRST
  [ "$phase" -eq 2 ] && SECS=$((TOTAL - FIRST))
  rc=0
  "$SOAK" --server "$ADDR" --server-pid "$SERVER" --duration "${SECS}s" --concurrency "$CONCURRENCY" \
    --seed "$SEED" --max-ids "$MAX_IDS" --csv "$OUT/soak.csv" --state "$OUT/state.json" --summary "$OUT/summary-phase$phase.json" \
    > /dev/null 2> >(tee "$OUT/soak-phase$phase.log" >&2) || rc=$?
  [ "$rc" -eq 0 ] || FAILED=1
  stop_server
done

echo
echo "=== summary of the last phase ($OUT/summary-phase$PHASES.json; earlier phases under previous_phases) ==="
cat "$OUT/summary-phase$PHASES.json"
echo
echo "CSV: $OUT/soak.csv   logs: $OUT/server*.log $OUT/soak-phase*.log"
if [ "$FAILED" -ne 0 ]; then
  echo "SOAK FAILED"
  exit 1
fi
echo "SOAK PASSED"
