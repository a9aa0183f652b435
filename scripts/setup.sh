#!/usr/bin/env bash
# Installs the system packages x402-gateway builds against (Debian/Ubuntu). Safe to run twice.
set -euo pipefail

packages=(libsecp256k1-dev libsqlite3-dev pkg-config)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "error: Swift 6.1 or newer must be on PATH (https://swift.org/install)" >&2; exit 1; }
