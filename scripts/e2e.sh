#!/usr/bin/env bash
# End-to-end suite: a local EVM chain with a USDC-like token, the official x402 Python SDK as
# facilitator and as paying client, and the gateway in between (Tests/e2e, docs/testing.md).
#
#   scripts/e2e.sh                 build the gateway if needed, run every scenario
#   scripts/e2e.sh -k replay       extra arguments go to pytest
#
# Environment:
#   X402_GATEWAY_BIN   use this gateway binary instead of building one with swift build
#   E2E_PYTHON         interpreter for the venv (default python3; needs 3.10+ with venv/ensurepip)
#   E2E_VENV           venv location (default .venv-e2e in the repository)
#   E2E_KEEP_LOGS=1    keep the run directory (logs, configs) even when everything passed
#   E2E_CHROMIUM       browser binary for the browser tests (default: chromium, installed if missing)
#   E2E_SCREENSHOT_DIR also write the paywall test's screenshots there (e.g. docs/images)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

python=${E2E_PYTHON:-python3}
venv=${E2E_VENV:-$root/.venv-e2e}
requirements=Tests/e2e/requirements.txt

if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
  echo "error: $python must be Python 3.10 or newer" >&2
  exit 1
fi

# --- venv with the pinned requirements (rebuilt when requirements.txt changes) ---------------------
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== e2e: preparing $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements"
  echo "$want" > "$stamp"
fi

# --- the gateway binary -------------------------------------------------------------------------------
if [ -z "${X402_GATEWAY_BIN:-}" ]; then
  source scripts/build-flags.sh
  echo "== e2e: swift build --product x402-gateway"
  swift build "${SWIFT_FLAGS[@]}" --product x402-gateway
  X402_GATEWAY_BIN="$(swift build "${SWIFT_FLAGS[@]}" --show-bin-path)/x402-gateway"
fi
[ -x "$X402_GATEWAY_BIN" ] || { echo "error: no gateway binary at $X402_GATEWAY_BIN" >&2; exit 1; }
export X402_GATEWAY_BIN

# --- a browser for the browser tests (Debian's chromium, driven over the DevTools protocol), a
# shared cache in front of the gateway for the caching test (Debian's nginx, run unprivileged), and
# the openssl CLI for the TLS tests -----------------------------------------------------------------
need=()
if [ -z "${E2E_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then need+=(chromium); fi
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then need+=(nginx); fi
# openssl: the TLS tests make their CA with it and check the listener with `openssl s_client`.
if ! command -v openssl >/dev/null 2>&1; then need+=(openssl); fi
if [ ${#need[@]} -gt 0 ]; then
  echo "== e2e: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- run; afterwards stop whatever process group the rig started and left behind ---------------------
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/x402-e2e.XXXXXX")
export E2E_RUN_DIR="$run_dir" E2E_PIDS_FILE="$run_dir/pids"
: > "$E2E_PIDS_FILE"

cleanup() {
  local pid
  [ -f "$E2E_PIDS_FILE" ] || return 0
  while read -r pid; do
    [ -n "$pid" ] || continue
    # Only a group this run started and that still exists (each rig process leads its own group).
    if [ "$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')" = "$pid" ]; then
      kill -TERM -- "-$pid" 2>/dev/null || true
      sleep 1
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  done < "$E2E_PIDS_FILE"
  : > "$E2E_PIDS_FILE"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== e2e: gateway $X402_GATEWAY_BIN; logs in $run_dir"
status=0
(cd Tests/e2e && "$venv/bin/python" -m pytest "$@") || status=$?
cleanup
if [ "$status" -eq 0 ] && [ -z "${E2E_KEEP_LOGS:-}" ]; then
  rm -rf "$run_dir"
else
  echo "== e2e: logs kept in $run_dir"
fi
exit "$status"
