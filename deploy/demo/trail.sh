#!/usr/bin/env bash
# The README's recommendation trail, against a demo server (deploy/demo.sh): eight shoppers
# who buy cameras with lenses and tripods or plants with a trowel, then Alice views the compact
# digital camera, clicks the camera lens and buys the compact SLR; trains, and shows her
# recommendations and one query ranked without and with her.
#   deploy/demo/trail.sh [http://127.0.0.1:50051]
# Records into the server it is given (its users: shopper-1..8, alice, newcomer has none).
set -euo pipefail
cd "$(dirname "$0")/../.."
ADDR=${1:-http://127.0.0.1:50051}
BIN=${MMSEARCH_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/mmsearch-target}/release/mmsearch}
EVENTS=$(mktemp --suffix=.jsonl)
trap 'rm -f "$EVENTS"' EXIT

t=1764000000000
event() { t=$((t + 60000)); printf '{"user_id":"%s","item_id":"%s","kind":"%s","timestamp_ms":%s}\n' "$1" "$2" "$3" "$t" >> "$EVENTS"; }
event shopper-1 compact-slr-camera purchase; event shopper-1 camera-lens purchase; event shopper-1 tripod purchase; event shopper-1 nikkormat-slr-camera view
event shopper-2 nikkormat-slr-camera purchase; event shopper-2 camera-lens purchase; event shopper-2 tripod purchase; event shopper-2 instant-camera click
event shopper-3 compact-slr-camera view; event shopper-3 instant-camera purchase; event shopper-3 tripod purchase; event shopper-3 camera-lens purchase
event shopper-4 compact-slr-camera purchase; event shopper-4 nikkormat-slr-camera purchase; event shopper-4 camera-lens cart; event shopper-4 tripod view
event shopper-5 orchid purchase; event shopper-5 hand-trowel purchase; event shopper-5 bonsai-tree view; event shopper-5 aloe-vera purchase
event shopper-6 bonsai-tree purchase; event shopper-6 hand-trowel purchase; event shopper-6 orchid click; event shopper-6 spiky-cactus purchase
event shopper-7 aloe-vera purchase; event shopper-7 hand-trowel purchase; event shopper-7 spiky-cactus purchase; event shopper-7 orchid view
event shopper-8 tulip-pot purchase; event shopper-8 hand-trowel purchase; event shopper-8 bonsai-tree click; event shopper-8 orchid purchase
event alice compact-digital-camera view; event alice camera-lens click; event alice compact-slr-camera purchase
event alice no-such-item view

run() { echo "\$ mmsearch $*"; "$BIN" "$@" --server "$ADDR"; }
run events "$EVENTS"
run admin train
run recommend --user alice -k 4
run search --text "something to hold my camera steady" -k 5
run search --text "something to hold my camera steady" -k 5 --user alice --personalization 0.3 --explain
run recommend --user newcomer -k 3
