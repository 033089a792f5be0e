#!/usr/bin/env bash
# RSS of a --no-models server after 20k 384-d items (mmsearch-scale ingest) and after a rebuild.
# usage: benches/store_rss.sh <server-binary> <label>   (needs mmsearch-scale built: cargo build --release -p mmsearch-tools --bin mmsearch-scale)
set -euo pipefail
BIN=$1; LABEL=$2
SCALE=$HOME/.cache/mmsearch-target/release/mmsearch-scale
D=$(mktemp -d /tmp/rss.XXXX)
cat > $D/c.toml <<T
[[spaces]]
name = "shared"
dim = 384
metric = "cosine"
[index]
max_fresh = 1000000
T
$BIN serve --config $D/c.toml --data-dir $D/data --listen 127.0.0.1:29811 --metrics-listen 127.0.0.1:29812 --no-models --insecure-no-auth > $D/out 2> $D/err &
PID=$!
for _ in $(seq 1 300); do grep -q "listening on" $D/out 2>/dev/null && break; sleep 0.2; done
rss() { awk '/^(VmRSS|VmHWM|RssAnon):/ {printf "%s %.0f MiB  ", $1, $2/1024}' /proc/$PID/status; echo; }
echo "$LABEL ready:        $(rss)"
$SCALE ingest --server http://127.0.0.1:29811 --n 20000 --dim 384 --streams 2 > $D/ingest.log 2>&1
echo "$LABEL after 20k:    $(rss)"
curl -s http://127.0.0.1:29812/metrics | grep '^mmsearch_memory_bytes' | tr '\n' ' '; echo
$BIN admin --server http://127.0.0.1:29811 rebuild > /dev/null
echo "$LABEL after rebuild: $(rss)"
curl -s http://127.0.0.1:29812/metrics | grep '^mmsearch_memory_bytes' | tr '\n' ' '; echo
kill -TERM $PID; wait $PID || true
rm -rf $D
