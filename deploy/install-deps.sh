#!/usr/bin/env bash
# Installs what building and testing mmsearch needs on a fresh Debian 12 machine (idempotent):
#   - libclang (bindgen for the RocksDB bindings) and librocksdb-dev (RocksDB 7.8 is linked from
#     Debian, not compiled: .cargo/config.toml sets ROCKSDB_LIB_DIR), espeak-ng + sox (spoken test
#     queries), ffmpeg + ffprobe (video items and queries: keyframes and soundtrack, run as a
#     subprocess), and with --browser (deploy/test.sh) chromium + chromium-driver: tests/web.rs
#     drives the web pages in headless Chromium over WebDriver (~160 MB of packages, about a minute)
#   - Python grpcio + grpcio-reflection (the stock-client reflection test)
set -euo pipefail
APT_PKGS=(libclang1-14 libclang-common-14-dev librocksdb-dev espeak-ng sox ffmpeg)
if [ "${1:-}" = "--browser" ]; then APT_PKGS+=(chromium chromium-driver); fi
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! python3 -c "import grpc, grpc_reflection, google.protobuf" 2>/dev/null; then
  python3 -m pip install -q "grpcio==1.85.3" "grpcio-reflection==1.85.1" "protobuf==7.36.2"
fi
