#!/usr/bin/env bash
# Performance harness (docs/performance.md): gateway vs nginx and vs the official x402 Python
# middleware, on loopback, in one run. Installs nginx, wrk and a Python venv (.venv-bench/), builds
# the gateway in release mode (.build-release/), runs eight scenarios, stops everything it started and
# prints a table. Knobs: BENCH_DURATION, BENCH_CONNECTIONS, BENCH_THREADS, BENCH_WARMUP,
# BENCH_WRK_CPUS, BENCH_LOG_LEVEL, BENCH_ONLY (e.g. "1,2"), BENCH_SKIP_BUILD=1, BENCH_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build-flags.sh
bash scripts/setup.sh

source scripts/perf-setup.sh
exec "$VENV/bin/python" Benchmarks/run.py
