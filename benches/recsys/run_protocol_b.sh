#!/usr/bin/env bash
# Protocol B (#11), Complete Journey, in one run: the reference baselines (buy-again with
# repeats, numpy EASE on new items) and the same split through a real server (release binary,
# random 8-d item vectors: the content source is off, only behaviour counts). Extra
# `[recommend]` lines can be passed in RECOMMEND (e.g. RECOMMEND='ease_lambda = 500');
# MIN_HOUSEHOLDS=5 runs the large-catalogue variant (24,281 items: the server trains item-kNN);
# TRAIN_UNTIL=43 the validation split (train weeks <= 43, test 44-48).
#   benches/recsys/run_protocol_b.sh        (needs: cargo build --release --bin mmsearch)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
root="${MMSEARCH_RECSYS:-$HOME/.cache/mmsearch/recsys}"
run="${RUN:-$root/runB}"
bin="${MMSEARCH_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/mmsearch}"
py="$root/venv/bin/python"
"$repo/benches/recsys/fetch.sh" >/dev/null
mkdir -p "$run"
echo "load: $(uptime)"
data="$run/data"
rm -rf "$data"
cat > "$run/b.toml" <<TOML
listen = "127.0.0.1:0"
[[spaces]]
name = "shared"
dim = 8
metric = "cosine"
role = "text"
[recommend]
blend_content = 0.0
${RECOMMEND:-}
TOML
"$bin" serve --config "$run/b.toml" --data-dir "$data" --insecure-no-auth --no-models > "$run/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  addr=$(grep -o 'listening on [0-9.:]*' "$run/server.log" | head -1 | awk '{print $3}') || true
  [[ -n "${addr:-}" ]] && break
  sleep 0.5
done
[[ -n "${addr:-}" ]] || { cat "$run/server.log"; exit 1; }
"$py" "$repo/benches/recsys/protocol_b.py" --data "$root/completejourney" --min-households "${MIN_HOUSEHOLDS:-50}" --train-until "${TRAIN_UNTIL:-48}" --addr "$addr" --pid "$pid" | tee "$run/result.jsonl"
kill "$pid"; wait "$pid" || true
rm -rf "$data"
echo "load: $(uptime)"
