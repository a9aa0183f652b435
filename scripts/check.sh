#!/usr/bin/env bash
# The one entry point for checks: strict build, then every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build-flags.sh
bash scripts/setup.sh

echo "== build (warnings as errors, explicit target imports)"
swift build --build-tests "${SWIFT_FLAGS[@]}"

echo "== unit and live tests"
swift test --skip-build "${SWIFT_FLAGS[@]}" 2>&1 | tee .build/test-output.txt | grep -vE '^(◇|↳)' 
