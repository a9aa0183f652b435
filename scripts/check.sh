#!/usr/bin/env bash
# The one entry point for checks: strict build, then every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build-flags.sh
bash scripts/setup.sh

echo "== build (warnings as errors, explicit target imports)"
swift build --build-tests "${SWIFT_FLAGS[@]}"

echo "== unit and live tests (the ledger's PostgreSQL tests on a throwaway server)"
postgres_env=$(bash scripts/postgres-test-server.sh start)
eval "$postgres_env"
trap 'bash scripts/postgres-test-server.sh stop "$X402_TEST_POSTGRES_DIR"' EXIT
export X402_TEST_POSTGRES_URL X402_REQUIRE_POSTGRES=1
swift test --skip-build "${SWIFT_FLAGS[@]}" 2>&1 | tee .build/test-output.txt | grep -vE '^(◇|↳)'
bash scripts/postgres-test-server.sh stop "$X402_TEST_POSTGRES_DIR"
trap - EXIT
unset X402_TEST_POSTGRES_URL X402_TEST_POSTGRES_DIR X402_REQUIRE_POSTGRES

echo "== end-to-end: official x402 SDK client and facilitator, local EVM chain (Tests/e2e)"
X402_GATEWAY_BIN="$(swift build "${SWIFT_FLAGS[@]}" --show-bin-path)/x402-gateway" bash scripts/e2e.sh
