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
# A run that hangs (seen now and then under load: every thread idle, a live-socket test never
# answered; under investigation, see docs/testing.md) is stopped after 10 minutes and run again
# once, whole; a second hang or any failing test fails the check.
for attempt in 1 2; do
  status=0
  timeout 600 swift test --skip-build "${SWIFT_FLAGS[@]}" 2>&1 | tee .build/test-output.txt | grep -vE '^(◇|↳)' || status=${PIPESTATUS[0]}
  [ "$status" -eq 124 ] && [ "$attempt" -eq 1 ] && { echo "== HUNG: the Swift tests made no end in 10 minutes; running them all again once"; cp .build/test-output.txt .build/test-output-hung.txt; pkill -f x402-gatewayPackageTests.xctest || true; continue; }
  [ "$status" -eq 0 ] || exit "$status"
  break
done
bash scripts/postgres-test-server.sh stop "$X402_TEST_POSTGRES_DIR"
trap - EXIT
unset X402_TEST_POSTGRES_URL X402_TEST_POSTGRES_DIR X402_REQUIRE_POSTGRES

echo "== end-to-end: official x402 SDK client and facilitator, local EVM chain (Tests/e2e)"
X402_GATEWAY_BIN="$(swift build "${SWIFT_FLAGS[@]}" --show-bin-path)/x402-gateway" bash scripts/e2e.sh

# The libFuzzer targets (Fuzz/, docs/reliability.md), each for a short time from the committed seed
# corpus: a separate sanitized build (.build-fuzz), about as long as the normal cold build.
# X402_FUZZ_SECONDS sets the time per target (0 skips this step).
fuzz_seconds=${X402_FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" != 0 ]; then
  echo "== fuzzing: every target for $fuzz_seconds s (scripts/fuzz.sh)"
  bash scripts/fuzz.sh "$fuzz_seconds"
fi
