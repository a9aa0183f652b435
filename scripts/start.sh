#!/usr/bin/env bash
# Sets up, builds and starts the gateway with gateway.yaml.example in front of the bundled
# example upstream (127.0.0.1:8080). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build-flags.sh
bash scripts/setup.sh
CONFIG="${1:-gateway.yaml.example}"

swift build "${SWIFT_FLAGS[@]}" --product x402-gateway
swift build "${SWIFT_FLAGS[@]}" --product example-upstream
bin="$(swift build --show-bin-path)"

"$bin/x402-gateway" check --config "$CONFIG"
"$bin/example-upstream" --port 8080 &
upstream=$!
trap 'kill $upstream 2>/dev/null || true' EXIT INT TERM
echo "example upstream on http://127.0.0.1:8080 — try: curl -i http://127.0.0.1:8402/weather"
"$bin/x402-gateway" run --config "$CONFIG"
