#!/usr/bin/env bash
# Video ingest cost (#14): benches/video.rs on the 720p test videos, beside FFmpeg's keyframe
# extraction alone; prints the JSON lines and a table (seconds of processing per minute of
# video), with the machine's load.
#
#   benches/run_video.sh               # from the repo root
#   MMSEARCH_BENCH_N=5 benches/run_video.sh
#
# Build: as benches/run_encode.sh (dev profile, this crate at opt-level 3: what the shared
# target dir has warm).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/mmsearch-target}
export MMSEARCH_BENCH_THREADS=${MMSEARCH_BENCH_THREADS:-2}
deploy/video/make-test-videos.sh >/dev/null
ARGS=(bench --bench video --profile dev
  --config 'profile.dev.package.mmsearch.opt-level=3'
  --config 'profile.dev.package.mmsearch.debug-assertions=false'
  --config 'profile.dev.package.mmsearch.overflow-checks=false')
echo "building: cargo ${ARGS[*]}" >&2
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)  nproc $(nproc)  $(ffmpeg -version | head -1 | cut -d' ' -f1-3)" >&2
cargo "${ARGS[@]}" > "$OUT"
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)" >&2
cat "$OUT"
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(f"\n| file | video | case | frames | p50 ms | s per min of video |\n|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['file']} | {r['width']}×{r['height']}, {r['seconds']:.1f} s | {r['case']} | {r['frames']} | {r['p50_ms']:.0f} | {r['s_per_min']:.2f} |")
PY
