#!/usr/bin/env bash
# ANN benchmark driver: mmsearch-index (ann.rs) vs hnswlib vs faiss-cpu IndexHNSWFlat vs usearch.
#
#   index/benches/run_ann.sh [SET ...]        default: fashion-mnist-784 glove-50
#
# Env: MMSEARCH_BENCH_DATA (data + results, default ~/.cache/mmsearch/bench),
#      ANN_VENV (python venv with numpy hnswlib faiss-cpu usearch matplotlib; created if missing,
#      default ~/.cache/mmsearch/venv-ann), ANN_EF, ANN_THREADS, ANN_NQ, ANN_M, ANN_EFC,
#      GLOVE_BASE (use only the first N GloVe base rows: set glove-50-<N/1000>k),
#      ANN_NO_REPORT=1 (skip BENCHMARKS.md / PNG update), ANN_BUILDERS (default native,hnsw_rs),
#      ANN_OLD_PATH=1 (also the hnsw_rs serving path of older generations).
# Runs, per set and in this order on the same machine: prepare (cached), ann.rs (flat graph
# builds, each file opened and swept in a child process), hnswlib, faiss, usearch; then
# ann_report.py rewrites the "## ANN index vs hnswlib and faiss" section of BENCHMARKS.md and
# index/benches/ann_<set>.png from the JSON lines in $MMSEARCH_BENCH_DATA/results/.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
CMD="index/benches/run_ann.sh $*"
for v in MMSEARCH_BENCH_DATA ANN_EF ANN_THREADS ANN_NQ ANN_M ANN_EFC ANN_DIAG_EF ANN_BUILDERS ANN_OLD_PATH GLOVE_BASE RUSTFLAGS; do
  if [ -n "${!v:-}" ]; then CMD="$v=${!v} $CMD"; fi
done
export MMSEARCH_BENCH_DATA=${MMSEARCH_BENCH_DATA:-$HOME/.cache/mmsearch/bench}
VENV=${ANN_VENV:-$HOME/.cache/mmsearch/venv-ann}
EF=${ANN_EF:-10,16,24,32,48,64,96,128,256}
THREADS=${ANN_THREADS:-1,2}
M=${ANN_M:-16}
EFC=${ANN_EFC:-200}
NQ=${ANN_NQ:-0}
DIAG_EF=${ANN_DIAG_EF:-}   # with ANN_OLD_PATH: 1-thread hnsw_rs-direct sweeps, e.g. 16,32,64,128
BUILDERS=${ANN_BUILDERS:-native,hnsw_rs}
SETS=("$@")
[ ${#SETS[@]} -gt 0 ] || SETS=(fashion-mnist-784 glove-50)

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy hnswlib faiss-cpu usearch matplotlib
fi
"$VENV/bin/python" -c "import usearch" 2>/dev/null || "$VENV/bin/pip" install -q usearch
PY="$VENV/bin/python"
RES="$MMSEARCH_BENCH_DATA/results"
mkdir -p "$RES"

# Build the bench binary first so compile time never overlaps a measurement, then run it
# directly: `cargo bench` would hold the target dir's lock for the whole run.
ANN_BIN=$(cargo bench -p mmsearch-index --bench ann --no-run --message-format=json \
  | "$PY" -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "ann"][-1])')

names=()
for set in "${SETS[@]}"; do
  name=$set
  if [[ $set == glove-50* && -n "${GLOVE_BASE:-}" ]]; then
    "$PY" index/benches/prepare_ann.py glove-50 --glove-base "$GLOVE_BASE"
    name="glove-50-$((GLOVE_BASE / 1000))k"
  else
    "$PY" index/benches/prepare_ann.py "$set"
  fi
  names+=("$name")
  out="$RES/$name.jsonl"
  : > "$out"
  nqarg=(); [ "$NQ" != 0 ] && nqarg=(--nq "$NQ")
  diagarg=(); [ -n "$DIAG_EF" ] && diagarg=(--diag-ef "$DIAG_EF")
  [ -n "${ANN_OLD_PATH:-}" ] && diagarg+=(--old-path)
  echo "== $name: mmsearch-index (uptime: $(uptime))" >&2
  "$ANN_BIN" --set "$name" --ef "$EF" --threads "$THREADS" \
    --m "$M" --efc "$EFC" --builders "$BUILDERS" "${nqarg[@]}" "${diagarg[@]}" | tee -a "$out"
  for engine in hnswlib faiss usearch; do
    echo "== $name: $engine (uptime: $(uptime))" >&2
    "$PY" index/benches/ann_reference.py --engine "$engine" --set "$name" --ef "$EF" --threads "$THREADS" \
      --m "$M" --efc "$EFC" "${nqarg[@]}" | tee -a "$out"
  done
done

if [ -z "${ANN_NO_REPORT:-}" ]; then
  "$PY" index/benches/ann_report.py --command "$CMD" "${names[@]}"
fi
