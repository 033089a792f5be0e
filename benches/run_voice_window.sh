#!/usr/bin/env bash
# Whisper over the clip instead of a 30 s window (issue #12, whisper.cpp's `audio_ctx`), side by
# side in one run: for each `[encode] speech_pad_seconds` in PADS (30 = the whole window, the
# behaviour before), word accuracy and voice retrieval on the espeak-ng clips of the Vendure
# eval set (`mmsearch-eval --espeak voice_queries,vendure_paraphrases`: 14 + 36 clips), then
# voice query latency over gRPC (`mmsearch-load --kind voice`, the 1.3 s "wireless mouse" clip,
# concurrency 1 and 8) against a server on the demo catalogue. Rounds alternate the settings.
#
#   benches/run_voice_window.sh      # needs models/setup.sh, deploy/eval/fetch_eval.py, the demo catalogue
# Env: PADS (default "30 1"), ROUNDS (default 2), CELL_SECONDS (default 10), VOICE_WORK.
# Results: JSON lines in $VOICE_WORK/results.jsonl (also on stdout).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mmsearch-target}
PADS=${PADS:-30 1}
ROUNDS=${ROUNDS:-2}
CELL=${CELL_SECONDS:-10}
WORK=${VOICE_WORK:-$HOME/.cache/mmsearch/voicewindow}
DEMO=${MMSEARCH_DEMO:-$HOME/.cache/mmsearch/demo}
LISTEN=127.0.0.1:29896
OUT=$WORK/results.jsonl

source benches/lib.sh
cargo "${OPT3_BUILD[@]}" -p mmsearch -p mmsearch-tools --bin mmsearch --bin mmsearch-load --bin mmsearch-eval
BIN=$CARGO_TARGET_DIR/release
fresh_demo_work
espeak-ng -w "$WORK/query.wav" "wireless mouse"
machine | tee "$OUT"
for round in $(seq 1 "$ROUNDS"); do
  for pad in $PADS; do
    printf '[encode]\nspeech_pad_seconds = %s\n' "$pad" > "$WORK/pad-$pad.toml"
    if [ "$round" = 1 ]; then
      # Quality does not change between rounds (greedy decoding is deterministic): once.
      "$BIN/mmsearch-eval" --profile ci --sets vendure --espeak voice_queries,vendure_paraphrases \
        --config "$WORK/pad-$pad.toml" --out "$WORK/eval-pad-$pad.json" > "$WORK/eval-pad-$pad.txt"
      python3 - "$WORK/eval-pad-$pad.json" "$pad" <<'PY' | tee -a "$OUT"
import json, sys
r = json.load(open(sys.argv[1]))
voice = [dict(name=s["name"], n=s["n"], **s["metrics"]) for s in r["sections"] if s["name"].startswith("voice/")]
print(json.dumps({"measure": "voice_quality", "pad_seconds": float(sys.argv[2]), "sections": voice,
                  "heard": [[t["said"], t["heard"]] for t in r["transcripts"]]}, ensure_ascii=False))
PY
    fi
    start_demo_server --config "$WORK/pad-$pad.toml"
    "$BIN/mmsearch-load" --server "http://$LISTEN" --kind voice --file "$WORK/query.wav" --concurrency 1,8 --seconds "$CELL" \
      | sed "s/^{/{\"measure\":\"load\",\"pad_seconds\":$pad,\"round\":$round,\"load1\":\"$(cut -d' ' -f1 /proc/loadavg)\",/" \
      | tee -a "$OUT"
    stop_server
  done
done
printf '{"measure":"machine_end","load":"%s"}\n' "$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"
