#!/usr/bin/env bash
# Soak (docs/reliability.md): `scripts/soak.sh [minutes]` (default 30) runs mixed traffic against
# one release-built gateway — 402s, free requests and 100 MB downloads, paid requests against a
# stub facilitator with replays, slowloris heads, pipelining, clients vanishing mid-body — and
# samples its RSS and open descriptors. Exits non-zero when a target is missed. Same installs,
# build and knobs as scripts/bench.sh (BENCH_SKIP_BUILD=1, BENCH_GATEWAY_BIN, BENCH_KEEP=1); its
# own: SOAK_WARMUP_SECONDS, SOAK_SAMPLE_SECONDS, SOAK_FD_SLACK.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build-flags.sh
bash scripts/setup.sh

source scripts/perf-setup.sh
export SOAK_MINUTES="${1:-${SOAK_MINUTES:-30}}"
exec "$VENV/bin/python" Benchmarks/soak.py
