#!/usr/bin/env bash
# Local pre-verification throughput (EIP-3009 digest + secp256k1 recovery) on one core, release build.
# Prints operations per second; asserts nothing about time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
X402_CRYPTO_BENCH=1 taskset -c 0 swift test -c release --filter ThroughputTests 2>&1 | grep -E 'ops/s|passed|failed'
