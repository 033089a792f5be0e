#!/usr/bin/env bash
# Protocol A (#11), MovieLens 100k, in one run: the reference baselines (reference.py), then
# the same split through a real server (models on: the content path uses the text tower):
# items upserted, training events recorded, model trained, RecommendForUser for every user.
# Three server configurations: the blend (default weights), collaborative only, content only.
# Output: $RUN/reference.json and $RUN/server-*.json, and a summary with ratios.
#   benches/recsys/run_protocol_a.sh            (needs: cargo build --release --bin mmsearch)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
root="${MMSEARCH_RECSYS:-$HOME/.cache/mmsearch/recsys}"
run="${RUN:-$root/runA}"
bin="${MMSEARCH_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/mmsearch}"
py="$root/venv/bin/python"
"$repo/benches/recsys/fetch.sh" >/dev/null
mkdir -p "$run"
echo "load: $(uptime)"
[[ -f "$run/reference.json" ]] || "$py" "$repo/benches/recsys/reference.py" --data "$root/ml-100k" --out "$run"

serve() {  # name, extra [recommend] lines
  local name="$1" extra="$2" data="$run/data-$1"
  rm -rf "$data" "$run/snapshots"
  # The item text is "title" + description "year genres": the text tower embeds both.
  cat > "$run/$name.toml" <<TOML
listen = "127.0.0.1:0"
[fusion]
include_description = true
[recommend]
$extra
TOML
  "$bin" serve --config "$run/$name.toml" --data-dir "$data" --insecure-no-auth > "$run/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    addr=$(grep -o 'listening on [0-9.:]*' "$run/$name.log" | head -1 | awk '{print $3}') || true
    [[ -n "${addr:-}" ]] && break
    sleep 0.5
  done
  [[ -n "${addr:-}" ]] || { cat "$run/$name.log"; exit 1; }
  "$py" "$repo/benches/recsys/protocol_a.py" --addr "$addr" --run "$run" --load --label "$name" > "$run/server-$name.json"
  kill "$pid"; wait "$pid" || true
  rm -rf "$data"
  cat "$run/server-$name.json"; echo
}
# Every configuration runs at the defaults of `[recommend]` but for the source switched off;
# RECOMMEND adds lines to all of them (e.g. RECOMMEND='content_half_life_items = 0').
configs="${CONFIGS:-blend collaborative content}"
for c in $configs; do
  case "$c" in
    blend) serve blend "${RECOMMEND:-}" ;;
    collaborative) serve collaborative "blend_content = 0.0
${RECOMMEND:-}" ;;
    content) serve content "blend_collaborative = 0.0
${RECOMMEND:-}" ;;
  esac
done
"$py" - "$run" <<'PY'
import json, sys, os
run = sys.argv[1]
ref = json.load(open(os.path.join(run, "reference.json")))
base = {k: v for k, v in ref.items() if isinstance(v, dict) and k != "content_tfidf"}
best_hr = max(v["hr10"] for v in base.values()); best_nd = max(v["ndcg10"] for v in base.values())
print(f"best baseline HR@10 {best_hr:.4f} NDCG@10 {best_nd:.4f}; content TF-IDF {ref['content_tfidf']['hr10']:.4f}/{ref['content_tfidf']['ndcg10']:.4f}")
for name in ["blend", "collaborative", "content"]:
    if not os.path.exists(os.path.join(run, f"server-{name}.json")):
        continue
    s = json.load(open(os.path.join(run, f"server-{name}.json")))
    e = s["eval"]
    print(f"server {name:<14} HR@10 {e['hr10']:.4f} ({e['hr10']/best_hr:.3f}x)  NDCG@10 {e['ndcg10']:.4f} ({e['ndcg10']/best_nd:.3f}x)  "
          f"p50 {e['p50_ms']:.1f} ms p99 {e['p99_ms']:.1f} ms  load {json.dumps(s.get('load', {}))}")
PY
echo "load: $(uptime)"
