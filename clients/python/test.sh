#!/usr/bin/env bash
# Tests the Python client (clients/python):
#   1. a venv in clients/python/.venv (Debian's python3-venv is installed only if
#      `python3 -m venv` fails) with `pip install -e clients/python[dev]`;
#   2. the committed stubs compared with ones generated afresh from proto/ (any difference
#      fails: run clients/python/generate.sh and commit);
#   3. mypy --strict on the package;
#   4. pytest against real servers. The server binary is $MMSEARCH_BIN, else
#      $CARGO_TARGET_DIR/release/mmsearch, else target/release/mmsearch, else
#      ~/.cache/mmsearch-target/release/mmsearch; without one the tests fail.
# Arguments go to pytest (e.g. `clients/python/test.sh -k errors`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${MMSEARCH_PY_VENV:-$here/.venv}"
started=$SECONDS

if [[ ! -x "$venv/bin/python" ]]; then
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    echo "python3 -m venv failed; installing Debian's python3-venv"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
fi
# Reinstall only when the package's requirements changed since the last install.
stamp="$venv/.mmsearch-client-installed"
want="$(sha256sum "$here/pyproject.toml" | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$here[dev]"
  echo "$want" > "$stamp"
fi
echo "python client: venv ready ($((SECONDS - started))s)"

fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT
if ! out="$(PYTHON="$venv/bin/python" "$here/generate.sh" "$fresh" 2>&1)"; then echo "$out" >&2; exit 1; fi
if ! diff -ru -x __init__.py -x __pycache__ "$here/src/mmsearch/v1" "$fresh/mmsearch/v1"; then
  echo "python client: the committed stubs differ from proto/: run clients/python/generate.sh and commit" >&2
  exit 1
fi
echo "python client: stubs match proto/"

(cd "$here" && "$venv/bin/mypy" --strict --no-error-summary)
echo "python client: mypy --strict clean"

cd "$here"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
echo "python client: done in $((SECONDS - started))s"
