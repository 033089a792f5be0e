#!/usr/bin/env bash
# Encoders, Rust vs the Python onnxruntime reference, in one invocation (issue #3 acceptance):
#   1. Rust  (benches/encode.rs)            2. Python (benches/encode_reference.py)
#   3. Rust again (drift / load check)      (ROUNDS=N: N Rust/Python pairs, then Rust)
# then rewrites the "## Encoders: Rust vs Python onnxruntime reference" section of BENCHMARKS.md
# (only that section; the rest of the file is left byte for byte).
#
#   benches/run_encode.sh              # from the repo root
#   NO_MD=1 benches/run_encode.sh      # measure only, do not touch BENCHMARKS.md
#
# Build: the release profile, the one optimised build the demo and the tests use (`PROFILE=dev`
# builds the dev profile with this crate at opt-level 3 instead).
# Threads: MMSEARCH_BENCH_THREADS (default 2 here) for both engines.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODELS=${MMSEARCH_MODELS:-$HOME/.cache/mmsearch/models}
PY=${PY:-$MODELS/.venv/bin/python}
PROFILE=${PROFILE:-release}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/mmsearch-target}
export MMSEARCH_BENCH_THREADS=${MMSEARCH_BENCH_THREADS:-2}
export MMSEARCH_BENCH_JPEG=${MMSEARCH_BENCH_JPEG:-$HOME/.cache/mmsearch/demo/vendure-create-3.7.3/package/assets/images/florian-klauer-14840-unsplash.jpg}
export MMSEARCH_BENCH_PNG=${MMSEARCH_BENCH_PNG:-$MODELS/golden/img_alpha.png}
export MMSEARCH_BENCH_WAV=${MMSEARCH_BENCH_WAV:-$MODELS/golden/voice.wav}
export MMSEARCH_BENCH_CATALOG=${MMSEARCH_BENCH_CATALOG:-$HOME/.cache/mmsearch/demo/catalog.jsonl}
OUT=${OUT:-$CARGO_TARGET_DIR/encode-bench}
mkdir -p "$OUT"

CARGO_ARGS=(bench --bench encode)
if [ "$PROFILE" = dev ]; then
  CARGO_ARGS+=(--profile dev
    --config 'profile.dev.package.mmsearch.opt-level=3'
    --config 'profile.dev.package.mmsearch.debug-assertions=false'
    --config 'profile.dev.package.mmsearch.overflow-checks=false')
else
  CARGO_ARGS+=(--profile "$PROFILE")
fi
echo "building: cargo ${CARGO_ARGS[*]} --no-run" >&2
cargo "${CARGO_ARGS[@]}" --no-run 2> "$OUT/build.log" || { tail -30 "$OUT/build.log" >&2; exit 1; }
BIN=$(cargo "${CARGO_ARGS[@]}" --no-run --message-format=json 2>/dev/null \
  | "$PY" -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "encode" and m.get("executable"): print(m["executable"])' | tail -1)
[ -x "$BIN" ] || { echo "bench binary not found" >&2; exit 1; }

DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(uptime)
echo "start: $LOAD_START" >&2
: > "$OUT/results.jsonl"
run() { # tag, command...
  local tag=$1; shift
  echo "== $tag ($(uptime | sed 's/.*load average/load average/'))" >&2
  "$@" > "$OUT/$tag.jsonl" 2> "$OUT/$tag.log" || { cat "$OUT/$tag.log" >&2; exit 1; }
  cat "$OUT/$tag.log" >&2
  sed "s/^{/{\"run\": \"$tag\", /" "$OUT/$tag.jsonl" >> "$OUT/results.jsonl"
  echo "$tag $(uptime | sed 's/.*load average: //')" >> "$OUT/loads.txt"
}
: > "$OUT/loads.txt"
# ROUNDS=N alternates N times: rust1 python1 rust2 python2 ... rust(N+1) (default 1: Rust, Python, Rust)
ROUNDS=${ROUNDS:-1}
RUNS=""
for i in $(seq 1 "$ROUNDS"); do
  run "rust$i" "$BIN"; run "python$i" "$PY" benches/encode_reference.py; RUNS="$RUNS rust$i python$i"
done
run "rust$((ROUNDS + 1))" "$BIN"; RUNS="$RUNS rust$((ROUNDS + 1))"
LOAD_END=$(uptime)
echo "end: $LOAD_END" >&2

[ -n "${NO_MD:-}" ] && { echo "results in $OUT/results.jsonl (BENCHMARKS.md not touched)" >&2; exit 0; }

CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
NPROC=$(nproc)
RUSTC=$(rustc --version)
SECTION="$OUT/section.md"
RUNS="$RUNS" ROUNDS="${ROUNDS:-1}" DATE="$DATE" LOAD_START="$LOAD_START" LOAD_END="$LOAD_END" CPU="$CPU" NPROC="$NPROC" RUSTC="$RUSTC" PROFILE="$PROFILE" \
  "$PY" - "$OUT" > "$SECTION" <<'EOF'
import json, os, statistics, sys
out = sys.argv[1]
E = os.environ
runs = E["RUNS"].split()
rows = [json.loads(l) for l in open(f"{out}/results.jsonl") if l.strip()]
R = {(r["run"], r["case"]): r for r in rows}
loads = dict(l.split(" ", 1) for l in open(f"{out}/loads.txt").read().splitlines())
rust = [r for r in runs if r.startswith("rust")]
py = [r for r in runs if r.startswith("python")]
def vals(rs, case, key):
    return [R[(r, case)][key] for r in rs if (r, case) in R]
def med(v): return statistics.median(v) if v else None
def f(x, nd=1): return "—" if x is None else f"{x:.{nd}f}"
def each(v, nd=1): return " / ".join(f(x, nd) for x in v)
def ratio(a, b): return "—" if a is None or b is None else f"{a / b:.2f}"
def spread(num, den):  # most and least favourable pairing of single runs
    if not num or not den: return "—"
    return f"{min(num) / max(den):.2f}–{max(num) / min(den):.2f}"
L = []
L.append("## Encoders: Rust vs Python onnxruntime reference\n")
L.append(f"Issue #3 acceptance. Measured {E['DATE']} by `benches/run_encode.sh` in one invocation, runs in this order: "
         f"{', '.join(runs)} (Rust first, then the Python reference, then Rust again to show drift). Same ONNX files, same "
         "onnxruntime version (1.31.1: the Rust side loads the shared library built by `models/setup.sh`, Python the wheel "
         "in the models' venv), same session options (ORT_ENABLE_ALL, "
         f"{E.get('MMSEARCH_BENCH_THREADS')} intra-op threads per session, intra-op spinning off), same input files. "
         "JPEGs ≥ 896 px are decoded at reduced scale in the DCT domain on both sides (Rust default `fast_jpeg = true`; "
         "Python: PIL `draft` with the same 1/2–1/8 rule, so the 800×1200 photo is decoded at 400×600 by both). "
         "The reference checks itself against `golden.json` (text embedding, image bridge vectors, transcript) before timing. "
         "**Provider: CPU only.** No GPU was lent to this session, so the CUDA execution-provider benchmark could not be run.\n")
L.append("Batch 1: p50 latency of one call in ms — median over the runs of each engine, then every run's own p50 "
         "(each run: warm-up, then a fixed n: text 5+50, images 3+30, voice 2+10, ingest 1+5). Ratio = Python p50 / Rust p50 "
         "(> 1: Rust faster); the range pairs single runs most and least favourably, i.e. how far the load moved it.\n")
L.append("| case (batch 1) | Rust p50 | Python p50 | **ratio Python/Rust** | ratio range | Rust p50 per run | Python p50 per run | Rust p95 (med) | Python p95 (med) |")
L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
names = [("text_query", "text query `embed_queries` (\"red running shoes\", templated)"),
         ("image_jpeg", "image, Vendure JPEG 800×1200 (`embed_images`)"),
         ("image_png", "image, PNG 320×200 RGBA (golden `img_alpha.png`)"),
         ("voice", "voice, 1.31 s espeak-ng WAV → \"wireless mouse.\" (Whisper tiny.en, KV cache)"),
         ("image_jpeg_decode_preprocess", "&nbsp;&nbsp;JPEG decode + preprocess only (fast path)"),
         ("image_jpeg_decode_preprocess_full", "&nbsp;&nbsp;JPEG decode + preprocess, full-size decode"),
         ("image_model_bridge", "&nbsp;&nbsp;EfficientNet-Lite0 + ConSE bridge only"),
         ("voice_log_mel", "&nbsp;&nbsp;log-mel only"),
         ("voice_encoder_decoder", "&nbsp;&nbsp;Whisper encoder + greedy KV-cache decoding only")]
for c, label in names:
    rv, pv = vals(rust, c, "p50_ms"), vals(py, c, "p50_ms")
    L.append(f"| {label} | {f(med(rv))} | {f(med(pv))} | **{ratio(med(pv), med(rv))}** | {spread(pv, rv)} | {each(rv)} | {each(pv)} "
             f"| {f(med(vals(rust, c, 'p95_ms')))} | {f(med(vals(py, c, 'p95_ms')))} |")
L.append("")
L.append("Ingest, batch 32: the first 32 items of `~/.cache/mmsearch/demo/catalog.jsonl` (title + first Vendure photo, "
         "1600 px on the longer side); items/s = 32 / p50 of one batch call. Ratio = Rust items/s / Python items/s (> 1: Rust faster).\n")
L.append("| ingest, batch 32 | Rust items/s | Python items/s | **ratio Rust/Python** | ratio range | Rust items/s per run | Python items/s per run |")
L.append("|---|---:|---:|---:|---:|---:|---:|")
for c, label in [("ingest_fused", "32 items, title + photo, fused (towers + `fusion::fuse_item`)"),
                 ("ingest_titles", "&nbsp;&nbsp;32 titles only (`embed_texts`)"),
                 ("ingest_photos", "&nbsp;&nbsp;32 photos only (`embed_images`)")]:
    rv, pv = vals(rust, c, "items_per_s"), vals(py, c, "items_per_s")
    L.append(f"| {label} | {f(med(rv))} | {f(med(pv))} | **{ratio(med(rv), med(pv))}** | {spread(rv, pv)} | {each(rv)} | {each(pv)} |")
L.append("")
L.append("Command (repo root): `benches/run_encode.sh`"
         + (f" with `ROUNDS={E['ROUNDS']}`" if E.get("ROUNDS", "1") != "1" else "")
         + ". It builds `cargo bench --bench encode` "
         + ("with `--profile dev` and this crate at opt-level 3 (deps are opt-level 3 through `[profile.dev.package.\"*\"]`; "
            "debug-assertions/overflow-checks stay on in the deps, off in this crate), because that is what the shared target "
            "dir has warm (`PROFILE=bench` uses cargo's release-based bench profile)" if E["PROFILE"] == "dev"
            else f"with the `{E['PROFILE']}` profile")
         + ", then runs the binary and `~/.cache/mmsearch/models/.venv/bin/python benches/encode_reference.py` alternately. "
         "Raw JSON lines (schema `{engine, case, batch, n, p50_ms, p95_ms, mean_ms, items_per_s}`, plus the run tag) are in "
         "`$CARGO_TARGET_DIR/encode-bench/results.jsonl`; `cargo bench --bench encode` alone prints the Rust lines.\n")
L.append(f"Machine: {E['NPROC']} cores ({E['CPU']}), {E['RUSTC']}. Load (`uptime`) at start: `{E['LOAD_START'].strip()}`; "
         "load average after each run: " + ", ".join(f"{r} `{loads.get(r, '?')}`" for r in runs)
         + f"; at end: `{E['LOAD_END'].strip()}`.\n")
print("\n".join(L))
EOF

# Splice the section into BENCHMARKS.md: replace our section (from its heading to the next "## "
# heading or EOF) if present, else append it. Re-reads the file right before writing.
# Hand-written notes inside the section, from the line "<!-- notes: kept by run_encode.sh -->" to
# the end of the section, survive a rerun.
"$PY" - "$ROOT/BENCHMARKS.md" "$SECTION" <<'EOF'
import os, re, sys
path, sec_path = sys.argv[1:3]
sec = open(sec_path).read().rstrip("\n") + "\n"
head = "## Encoders: Rust vs Python onnxruntime reference"
marker = "<!-- notes: kept by run_encode.sh -->"
text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
i = text.find(head)
if i < 0:
    text = text.rstrip("\n") + "\n\n" + sec
else:
    m = re.compile(r"^## ", re.M).search(text, i + len(head))
    j = m.start() if m else len(text)
    old = text[i:j]
    k = old.find(marker)
    if k >= 0:
        sec += "\n" + old[k:].rstrip("\n") + "\n"
    text = text[:i] + sec + ("\n" + text[j:] if m else "")
open(path, "w").write(text)
EOF
echo "BENCHMARKS.md section written ($OUT/section.md)" >&2
