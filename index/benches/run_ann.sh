#!/usr/bin/env bash
# ANN benchmark driver: mmsearch-index (ann.rs) vs hnswlib vs faiss-cpu IndexHNSWFlat.
#
#   index/benches/run_ann.sh [SET ...]        default: fashion-mnist-784 glove-50
#
# Env: MMSEARCH_BENCH_DATA (data + results, default ~/.cache/mmsearch/bench),
#      ANN_VENV (python venv with numpy hnswlib faiss-cpu matplotlib; created if missing,
#      default ~/.cache/mmsearch/venv-ann), ANN_EF, ANN_THREADS, ANN_NQ, ANN_M, ANN_EFC,
#      GLOVE_BASE (use only the first N GloVe base rows: set glove-50-<N/1000>k),
#      ANN_NO_REPORT=1 (skip BENCHMARKS.md / PNG update).
# Runs, per set and in this order on the same machine: prepare (cached), ann.rs (build, sweep,
# generation dump, mmap-reload sweep in a child process), hnswlib, faiss; then
# ann_report.py rewrites the "## ANN index vs hnswlib and faiss" section of BENCHMARKS.md and
# index/benches/ann_<set>.png from the JSON lines in $MMSEARCH_BENCH_DATA/results/.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
CMD="index/benches/run_ann.sh $*"
for v in MMSEARCH_BENCH_DATA ANN_EF ANN_THREADS ANN_NQ ANN_M ANN_EFC ANN_DIAG_EF GLOVE_BASE RUSTFLAGS; do
  if [ -n "${!v:-}" ]; then CMD="$v=${!v} $CMD"; fi
done
export MMSEARCH_BENCH_DATA=${MMSEARCH_BENCH_DATA:-$HOME/.cache/mmsearch/bench}
VENV=${ANN_VENV:-$HOME/.cache/mmsearch/venv-ann}
EF=${ANN_EF:-10,16,24,32,48,64,96,128,256}
THREADS=${ANN_THREADS:-1,2}
M=${ANN_M:-16}
EFC=${ANN_EFC:-200}
NQ=${ANN_NQ:-0}
DIAG_EF=${ANN_DIAG_EF:-16,32,64,128}   # 1-thread hnsw_rs-direct sweeps (old search path); "" = off
SETS=("$@")
[ ${#SETS[@]} -gt 0 ] || SETS=(fashion-mnist-784 glove-50)

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy hnswlib faiss-cpu matplotlib
fi
PY="$VENV/bin/python"
RES="$MMSEARCH_BENCH_DATA/results"
mkdir -p "$RES"

# Build the bench binary first so compile time never overlaps a measurement.
cargo bench -p mmsearch-index --bench ann --no-run

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
  echo "== $name: mmsearch-index (uptime: $(uptime))" >&2
  cargo bench -q -p mmsearch-index --bench ann -- --set "$name" --ef "$EF" --threads "$THREADS" \
    --m "$M" --efc "$EFC" "${nqarg[@]}" "${diagarg[@]}" | tee -a "$out"
  for engine in hnswlib faiss; do
    echo "== $name: $engine (uptime: $(uptime))" >&2
    "$PY" index/benches/ann_reference.py --engine "$engine" --set "$name" --ef "$EF" --threads "$THREADS" \
      --m "$M" --efc "$EFC" "${nqarg[@]}" | tee -a "$out"
  done
done

if [ -z "${ANN_NO_REPORT:-}" ]; then
  "$PY" index/benches/ann_report.py --command "$CMD" "${names[@]}"
fi
