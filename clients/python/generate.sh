#!/usr/bin/env bash
# Regenerates the Python gRPC stubs and their type stubs (.pyi) from proto/ into
# src/mmsearch/v1/, or under the folder given as $1 (test.sh does that to check that the
# committed files are current). Rerun it after any change to proto/ and commit the result.
#
# The generators are pinned in the dev extra (grpcio-tools, mypy-protobuf), so the output is
# reproducible:  pip install -e 'clients/python[dev]'  (test.sh makes such a venv in .venv/).
# PYTHON picks the interpreter; by default .venv/bin/python here, else python3.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto_root="$(cd "$here/../../proto" && pwd)"
out="${1:-$here/src}"
if [[ -n "${PYTHON:-}" ]]; then py="$PYTHON"
elif [[ -x "$here/.venv/bin/python" ]]; then py="$here/.venv/bin/python"
else py="$(command -v python3)"; fi
bin="$(dirname "$py")"
for plugin in protoc-gen-mypy protoc-gen-mypy_grpc; do
  [[ -x "$bin/$plugin" ]] || { echo "generate.sh: $bin/$plugin missing; pip install -e 'clients/python[dev]' first" >&2; exit 1; }
done
mkdir -p "$out"
cd "$proto_root"
"$py" -m grpc_tools.protoc -I . \
  --plugin=protoc-gen-mypy="$bin/protoc-gen-mypy" --plugin=protoc-gen-mypy_grpc="$bin/protoc-gen-mypy_grpc" \
  --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" --mypy_grpc_out="$out" \
  mmsearch/v1/mmsearch.proto
echo "generated $out/mmsearch/v1/mmsearch_pb2{,_grpc}.py{,i}"
