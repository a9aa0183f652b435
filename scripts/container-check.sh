#!/usr/bin/env bash
# Proves the container image works: builds docker/Containerfile.local (the runtime stage of
# docker/Dockerfile, from binaries built on this host) with podman, runs it with the default
# capabilities as the image's own non-root user, and checks a free route, a priced route, the admin
# listener's /readyz, the uid of the process, SIGHUP and a clean stop on SIGTERM. Also checks that
# deploy/x402-gateway.service is the unit shown in docs/operations.md and passes systemd-analyze verify.
#
#   bash scripts/container-check.sh
#
# Needs root and Debian bookworm (it installs podman & co. with apt-get when missing). Everything it
# makes lives under .build-container/ (containers.conf, storage.conf, the image store, the build
# context); no system file is edited. The base image debian:bookworm-slim is made locally with
# debootstrap from the mirror apt already uses and kept between runs (delete it with
# `CONTAINERS_CONF=… podman rmi debian:bookworm-slim`, or remove .build-container/, to remake it).
# Environment: CONTAINER_CHECK_DIR (work directory), SWIFT_BUILD_TIMEOUT (seconds, default 3600).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK="${CONTAINER_CHECK_DIR:-$ROOT/.build-container}"
IMAGE=localhost/x402-gateway:check
BASE=debian:bookworm-slim
SCRATCH=.build-release
SWIFT_BUILD_TIMEOUT="${SWIFT_BUILD_TIMEOUT:-3600}"
STOP_GRACE=40              # podman stop's SIGKILL deadline: above limits.shutdownGrace (30s)
export PATH="/opt/swift/usr/bin:$PATH"

fail() { echo "container-check: FAILED: $*" >&2; exit 1; }
T0=$(date +%s)
PHASE=""; PHASE_T=0
phase() {
  local now; now=$(date +%s)
  [ -n "$PHASE" ] && printf 'container-check: phase %-34s %5ds\n' "$PHASE" $((now - PHASE_T))
  PHASE="$1"; PHASE_T=$now
  [ -n "$PHASE" ] && echo "container-check: --- $PHASE"
  return 0
}

[ "$(id -u)" -eq 0 ] || fail "run as root (rootful podman; apt-get)"

# --- 1. The runtime stages must be the same text ------------------------------------------------
phase "compare runtime stages"
runtime_stage() { awk '/^FROM /{n=NR} {l[NR]=$0} END{for(i=n;i<=NR;i++) print l[i]}' "$1"; }
if ! diff -u <(runtime_stage docker/Dockerfile) <(runtime_stage docker/Containerfile.local); then
  fail "the runtime stages (last FROM to the end) of docker/Dockerfile and docker/Containerfile.local differ"
fi
runtime_stage docker/Dockerfile | grep -q '^USER ' || fail "the runtime stage has no USER line"

# --- 2. Packages ---------------------------------------------------------------------------------
# podman with runc; containernetworking-plugins (CNI) and iptables give the build and the containers a
# bridged network and published ports; debootstrap makes the base image. buildah (and the uidmap it
# pulls in) is podman's build engine as a command line, handy for looking into a failed build.
# slirp4netns and fuse-overlayfs are for rootless podman only: not needed here.
phase "packages"
packages=(podman runc containernetworking-plugins iptables buildah debootstrap)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
for c in curl python3; do command -v "$c" >/dev/null || missing+=("$c"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  timeout 300 apt-get update -qq || fail "apt-get update"
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]}"
fi

# --- 3. A project-local containers configuration -------------------------------------------------
# runc and cgroupfs: this kind of host mixes cgroup v1 and v2 and runs no systemd; events go to a
# file (no journald); root cannot raise its hard limits here, so the containers' ulimits are set
# at or below the host's.
phase "containers configuration"
mkdir -p "$WORK/conf" "$WORK/storage" "$WORK/run" "$WORK/tmp"
cat > "$WORK/conf/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$WORK/run/events.log"
EOF
cat > "$WORK/conf/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
EOF
export CONTAINERS_CONF="$WORK/conf/containers.conf"
export CONTAINERS_STORAGE_CONF="$WORK/conf/storage.conf"
export TMPDIR="$WORK/tmp"
timeout 60 podman info >/dev/null || fail "podman info (see the error above)"

# --- 4. The base image, made with debootstrap and cached -----------------------------------------
phase "base image $BASE"
# The Debian mirror apt uses: deb822 (URIs:/Suites:) or one-line (deb URL SUITE ...) sources.
apt_uri_for() {   # $1: suite, e.g. bookworm or bookworm-security
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$1" '
      /^[ \t]*$/ { if (u != "" && ok && !done) { print u; done = 1 } u = ""; ok = 0; next }
      /^URIs:/ { u = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
      END { if (u != "" && ok && !done) print u }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$1" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1) == suite) print $i }' "$f"
  done
}
if timeout 30 podman image exists "$BASE"; then
  echo "$BASE exists (cached)"
else
  MIRROR=$(apt_uri_for bookworm | head -1)
  SECURITY=$(apt_uri_for bookworm-security | head -1)
  [ -n "$MIRROR" ] || fail "no Debian bookworm mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/"
  echo "debootstrap --variant=minbase bookworm from $MIRROR"
  rootfs="$WORK/rootfs"
  rm -rf "$rootfs"
  timeout 900 debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap (log: $WORK/debootstrap.log)"; }
  # Sources as in Debian's own image: the release, its updates and, when apt knows one, security.
  rm -f "$rootfs/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$MIRROR"
    if [ -n "$SECURITY" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$SECURITY"
    fi
  } > "$rootfs/etc/apt/sources.list.d/debian.sources"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | timeout 600 podman import --change 'CMD ["bash"]' - "$BASE" >/dev/null \
    || fail "podman import of the debootstrap tree"
  rm -rf "$rootfs"
fi

# --- 5. The release binaries, built on the host --------------------------------------------------
phase "swift build -c release"
bash scripts/setup.sh
for product in x402-gateway example-upstream; do
  timeout "$SWIFT_BUILD_TIMEOUT" swift build -c release --static-swift-stdlib --product "$product" --scratch-path "$SCRATCH" \
    || fail "swift build of $product (or it took over ${SWIFT_BUILD_TIMEOUT}s)"
done
bin="$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)"

# --- 6. The systemd unit: its copy in docs/operations.md; systemd-analyze verify when present ----
phase "systemd unit"
unit=deploy/x402-gateway.service
if ! diff -u "$unit" <(awk '/^```ini$/{on=1; next} /^```$/{on=0} on' docs/operations.md); then
  fail "the unit in docs/operations.md (the \`\`\`ini block) differs from $unit"
fi
if command -v systemd-analyze >/dev/null; then
  # verify wants ExecStart's program to exist: point it at the binary just built.
  mkdir -p "$WORK/unit"
  sed "s|/usr/local/bin/x402-gateway|$bin/x402-gateway|g" "$unit" > "$WORK/unit/x402-gateway.service"
  out=$(timeout 60 systemd-analyze verify "$WORK/unit/x402-gateway.service" 2>&1) \
    || fail "systemd-analyze verify $unit: $out"
  [ -z "$out" ] || fail "systemd-analyze verify $unit warns: $out"
  echo "ok: systemd-analyze verify $unit"
else
  echo "systemd-analyze not found: $unit not verified"
fi

# --- 7. The image --------------------------------------------------------------------------------
phase "podman build"
context="$WORK/context"
rm -rf "$context"; mkdir -p "$context/out"
cp "$bin/x402-gateway" "$bin/example-upstream" "$context/out/"
mkdir -p "$context/docker"; cp docker/gateway.docker.yaml "$context/docker/"
# --pull=never: the base image is the local one; nothing comes from a registry. The build's RUN
# steps reach the Debian mirror through podman's default (bridged, NATed) network.
if ! timeout 900 podman build --pull=never -f docker/Containerfile.local -t "$IMAGE" "$context" > "$WORK/build.log" 2>&1; then
  tail -30 "$WORK/build.log" >&2
  fail "podman build -f docker/Containerfile.local (log: $WORK/build.log)"
fi
grep -E '^\[[0-9]+/[0-9]+\] STEP|^--> Using cache' "$WORK/build.log" | sed 's/^/    /' || true
# Earlier builds' images and the build stage's image, now untagged: the cached layers stay.
timeout 120 podman image prune -f >/dev/null || true
[ "$(timeout 30 podman image inspect -f '{{.Config.User}}' "$IMAGE")" = "10402:10402" ] \
  || fail "the image's user is not 10402:10402"
timeout 60 podman run --rm "$IMAGE" check --config /etc/x402-gateway/gateway.yaml \
  || fail "x402-gateway check of the image's own configuration"

# --- 8. Run it: upstream and gateway containers --------------------------------------------------
phase "run and probe"
tag="x402-check-$$"
upstream="$tag-upstream"; gateway="$tag-gateway"
cleanup() {
  timeout 60 podman rm -f -t 0 "$gateway" "$upstream" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
logs() { echo "--- podman logs $1:" >&2; timeout 30 podman logs "$1" 2>&1 | tail -40 >&2 || true; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
GPORT=$(free_port); APORT=$(free_port)
while [ "$APORT" = "$GPORT" ]; do APORT=$(free_port); done

# The upstream: the bundled example API in its own container, as the image's user and hardened as
# docker/compose.yaml runs it.
timeout 60 podman run -d --name "$upstream" --cap-drop=ALL --read-only --security-opt no-new-privileges \
  --entrypoint example-upstream "$IMAGE" --host 0.0.0.0 --port 8080 >/dev/null \
  || fail "starting the upstream container"
UPSTREAM_IP=$(timeout 30 podman inspect -f '{{.NetworkSettings.IPAddress}}' "$upstream")
[ -n "$UPSTREAM_IP" ] || fail "the upstream container has no IP address"
# The gateway: default capabilities, the image's user, compose's configuration (docker/gateway.docker.yaml:
# the free route /public/*, the priced route /weather, the admin listener on 9402, the upstream at
# http://upstream:8080) mounted read-only as compose mounts it.
timeout 60 podman run -d --name "$gateway" --add-host "upstream:$UPSTREAM_IP" \
  -p "127.0.0.1:$GPORT:8402" -p "127.0.0.1:$APORT:9402" \
  -v "$ROOT/docker/gateway.docker.yaml:/etc/x402-gateway/gateway.yaml:ro" \
  "$IMAGE" >/dev/null || fail "starting the gateway container"
echo "gateway on 127.0.0.1:$GPORT, admin on 127.0.0.1:$APORT, upstream at $UPSTREAM_IP:8080"

running() { [ "$(timeout 30 podman inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = "true" ]; }
wait_http() {   # $1 url, $2 timeout (s): until it answers 200
  local deadline=$(( $(date +%s) + $2 ))
  until [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1")" = "200" ]; do
    running "$gateway" || { logs "$gateway"; fail "the gateway container exited while starting"; }
    [ "$(date +%s)" -lt "$deadline" ] || { logs "$gateway"; logs "$upstream"; fail "$1 did not answer 200 within $2s"; }
    sleep 0.3
  done
}
wait_http "http://127.0.0.1:$APORT/healthz" 60
deadline=$(( $(date +%s) + 60 ))
until timeout 30 podman logs "$upstream" 2>&1 | grep -q 'listening on'; do
  running "$upstream" || { logs "$upstream"; fail "the upstream container exited"; }
  [ "$(date +%s)" -lt "$deadline" ] || { logs "$upstream"; fail "the upstream did not start listening within 60s"; }
  sleep 0.3
done

# A free route: 200 with the upstream's body. (Before the TCP_NODELAY fix every accepted
# connection was reset here: the process has no CAP_NET_ADMIN.)
body=$(curl -sS -m 10 "http://127.0.0.1:$GPORT/public/hello") || { logs "$gateway"; fail "GET /public/hello"; }
[ "$body" = '{"hello":"world"}' ] || fail "GET /public/hello: unexpected body: $body"
echo "ok: GET /public/hello -> 200 $body"

# A priced route: 402 with a PAYMENT-REQUIRED header.
headers=$(curl -sS -m 10 -o /dev/null -D - "http://127.0.0.1:$GPORT/weather") || fail "GET /weather"
status=$(printf '%s' "$headers" | head -1 | awk '{print $2}')
[ "$status" = "402" ] || fail "GET /weather: status $status, expected 402"
printf '%s' "$headers" | grep -qi '^payment-required: ..' || fail "GET /weather: no PAYMENT-REQUIRED header"
echo "ok: GET /weather -> 402 with PAYMENT-REQUIRED"

# The admin listener's /readyz. Its facilitator check fails where there is no internet (503
# not_ready); the configuration and the upstream (resolved inside the container) must be ok.
ready_code=$(curl -s -m 10 -o "$WORK/readyz.json" -w '%{http_code}' "http://127.0.0.1:$APORT/readyz") || fail "GET /readyz"
ready_body=$(cat "$WORK/readyz.json")
case "$ready_code" in 200|503) ;; *) fail "GET /readyz: status $ready_code: $ready_body" ;; esac
printf '%s' "$ready_body" | grep -q '"config":"ok"' || fail "GET /readyz: config not ok: $ready_body"
printf '%s' "$ready_body" | grep -q '"upstream api":"ok"' || fail "GET /readyz: upstream not ok: $ready_body"
echo "ok: GET /readyz -> $ready_code $ready_body"

# The process runs as the image's non-root user, with no effective capability.
uid=$(timeout 30 podman exec "$gateway" id -u) || fail "podman exec id -u"
[ -n "$uid" ] && [ "$uid" -ne 0 ] || fail "the gateway container runs as uid $uid"
pid=$(timeout 30 podman inspect -f '{{.State.Pid}}' "$gateway")
proc_uid=$(awk '/^Uid:/{print $2}' "/proc/$pid/status")
cap_eff=$(awk '/^CapEff:/{print $2}' "/proc/$pid/status")
[ "$proc_uid" -ne 0 ] || fail "the gateway process (host pid $pid) runs as uid 0"
echo "ok: the gateway runs as uid $uid (host pid $pid: uid $proc_uid, CapEff $cap_eff); podman top:"
# Its ledger is in the image's volume, written by that user.
owner=$(timeout 30 podman exec "$gateway" stat -c '%u' /var/lib/x402-gateway/ledger.db) || { logs "$gateway"; fail "no ledger in /var/lib/x402-gateway"; }
[ "$owner" = "$uid" ] || fail "the ledger is owned by uid $owner, not the gateway's $uid"
echo "ok: the SQLite ledger /var/lib/x402-gateway/ledger.db belongs to uid $owner"
timeout 30 podman top "$gateway" user huser pid args | sed 's/^/    /'

# SIGHUP (what `systemctl reload` sends) re-reads the configuration; the gateway is PID 1 here.
timeout 30 podman kill -s HUP "$gateway" >/dev/null || fail "podman kill -s HUP"
deadline=$(( $(date +%s) + 10 ))
until timeout 30 podman logs "$gateway" 2>&1 | grep '"configuration reloaded"' | grep -q '"trigger":"SIGHUP"'; do
  [ "$(date +%s)" -lt "$deadline" ] || { logs "$gateway"; fail "no 'configuration reloaded' log within 10s of SIGHUP"; }
  sleep 0.2
done
running "$gateway" || { logs "$gateway"; fail "the gateway exited on SIGHUP"; }
[ "$(curl -s -o /dev/null -m 10 -w '%{http_code}' "http://127.0.0.1:$GPORT/weather")" = "402" ] || fail "GET /weather after SIGHUP"
echo "ok: SIGHUP -> configuration reloaded, still serving"

# --- 9. A clean stop on SIGTERM --------------------------------------------------------------------
phase "stop on SIGTERM"
t=$(date +%s%N)
timeout $((STOP_GRACE + 30)) podman stop -t "$STOP_GRACE" "$gateway" >/dev/null || fail "podman stop did not return"
stop_ms=$(( ($(date +%s%N) - t) / 1000000 ))
code=$(timeout 30 podman inspect -f '{{.State.ExitCode}}' "$gateway")
if [ "$code" != "0" ]; then logs "$gateway"; fail "the gateway exited with $code after SIGTERM (137: killed after ${STOP_GRACE}s)"; fi
[ "$stop_ms" -lt 10000 ] || fail "the idle gateway took ${stop_ms}ms to stop on SIGTERM"
echo "ok: podman stop (SIGTERM) -> exit code 0 in ${stop_ms}ms"
timeout 30 podman logs "$gateway" 2>&1 | tail -3 | sed 's/^/    /'

phase ""
echo "container-check: total $(( $(date +%s) - T0 ))s"
echo "container-check: passed"
