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

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
command -v taskset >/dev/null || need+=(util-linux)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The Python contender and the payment signer. Pinned: the comparison is against this release.
VENV=.venv-bench
PY_REQUIREMENTS=("x402[fastapi,evm]==2.25.0" "uvicorn==0.54.0" "coincurve==21.0.0")
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import x402, coincurve, uvicorn, uvloop, httptools' 2>/dev/null \
   || [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("x402"))')" != "2.25.0" ]; then
  echo "== python venv $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "${PY_REQUIREMENTS[@]}"
fi

# Release build in its own scratch path (a debug build in .build may be running concurrently).
# --build-tests also builds the ThroughputTests probe used for scenario 5.
if [ "${BENCH_SKIP_BUILD:-0}" != "1" ]; then
  echo "== release build (.build-release; a cold build takes 10-15 minutes on 2 cores)"
  swift build -c release --scratch-path .build-release --build-tests "${SWIFT_FLAGS[@]}"
fi

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec "$VENV/bin/python" Benchmarks/run.py
