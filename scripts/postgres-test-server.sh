#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: its own cluster in a temporary folder, on a free
# loopback port (127.0.0.1 only; its unix socket inside that folder), with a database and a user
# with a password. Installs Debian's postgresql when no server binaries are found.
#
#   eval "$(bash scripts/postgres-test-server.sh start)"
#       starts a server and prints the shell lines that export
#         X402_TEST_POSTGRES_URL  postgres://x402:PASSWORD@127.0.0.1:PORT/x402 (the user may create databases)
#         X402_TEST_POSTGRES_DIR  the cluster's folder (data, socket, log), for stop
#   bash scripts/postgres-test-server.sh stop "$X402_TEST_POSTGRES_DIR"
#       stops that server and removes its folder
#   bash scripts/postgres-test-server.sh run -- COMMAND [ARGS...]
#       starts a server, runs COMMAND with both variables exported, stops the server; exits as COMMAND did
#
# Everything else goes to stderr, so that `eval` sees only the exports. Every wait is bounded.
# As root, the server runs as the system user x402-postgres (created when missing; initdb refuses
# root); otherwise as the current user.
set -euo pipefail

marker=.x402-postgres-test-server
server_user=x402-postgres

log() { echo "postgres-test-server: $*" >&2; }
die() { log "error: $*"; exit 1; }

bin_dir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$dir" ] || [ ! -x "$dir/initdb" ]; then
    return 1
  fi
  echo "$dir"
}

install_postgres() {
  command -v apt-get >/dev/null || die "no PostgreSQL under /usr/lib/postgresql and no apt-get to install it"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  log "installing Debian's postgresql"
  $sudo apt-get update -qq >&2
  # policy-rc.d keeps the packaged cluster from starting where there is no init system; this
  # script never uses that cluster.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
}

# Runs "$@" as the server's user.
as_server_user() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$server_user" -- "$@"
  else
    "$@"
  fi
}

ensure_server_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  id -u "$server_user" >/dev/null 2>&1 && return 0
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$server_user"
}

# True when something accepts connections on 127.0.0.1:$1.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

random_port() {
  echo $(( 20000 + (($(od -An -N2 -tu2 /dev/urandom)) % 40000) ))
}

start() {
  local bin
  bin=$(bin_dir) || { install_postgres; bin=$(bin_dir) || die "postgresql installed, but no initdb under /usr/lib/postgresql/*/bin"; }
  ensure_server_user

  local dir password
  # As root, under /tmp: the server's user must reach the folder (a root-only TMPDIR would not do).
  local base=${TMPDIR:-/tmp}
  [ "$(id -u)" -eq 0 ] && base=/tmp
  dir=$(mktemp -d "$base/x402-postgres.XXXXXX")
  touch "$dir/$marker"
  password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  [ "$(id -u)" -eq 0 ] && chown -R "$server_user" "$dir"

  local started=$SECONDS
  as_server_user "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 --no-instructions --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; rm -rf "$dir"; die "initdb failed"; }

  # A free port: pick one nobody listens on; should another process take it first, the server
  # fails to bind and the next candidate is tried.
  local port="" attempt
  for attempt in 1 2 3 4 5 6 7 8; do
    local candidate
    candidate=$(random_port)
    port_in_use "$candidate" && continue
    # max_connections: the tests run in parallel, each store with its own pool. fsync=off: the
    # cluster is thrown away (synchronous_commit stays on, as the ledger requires).
    if as_server_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 -s \
        -o "-c listen_addresses=127.0.0.1 -p $candidate -c unix_socket_directories='$dir' -c max_connections=400 -c fsync=off" \
        start >&2; then
      port=$candidate
      break
    fi
    log "could not start on port $candidate (attempt $attempt), trying another"
    tail -n 5 "$dir/postgres.log" >&2 || true
  done
  [ -n "$port" ] || { stop "$dir"; die "the server did not start (see above)"; }

  "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 15 || { stop "$dir"; die "the server does not answer on 127.0.0.1:$port"; }
  as_server_user "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres >&2 <<SQL \
    || { stop "$dir"; die "could not create the test user and database"; }
CREATE ROLE x402 LOGIN CREATEDB PASSWORD '$password';
CREATE DATABASE x402 OWNER x402;
SQL
  log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, folder $dir (ready in $((SECONDS - started)) s)"
  echo "export X402_TEST_POSTGRES_URL='postgres://x402:$password@127.0.0.1:$port/x402'"
  echo "export X402_TEST_POSTGRES_DIR='$dir'"
}

stop() {
  local dir=${1:-}
  [ -n "$dir" ] || die "usage: $0 stop DIR"
  [ -d "$dir" ] || { log "$dir: already gone"; return 0; }
  [ -f "$dir/$marker" ] || die "$dir was not made by this script; leaving it alone"
  local bin
  bin=$(bin_dir) || true
  if [ -f "$dir/data/postmaster.pid" ]; then
    # Immediate: no shutdown checkpoint, the data is about to be removed.
    if [ -z "$bin" ] || ! as_server_user "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 -s stop >&2; then
      # The server did not stop in time: end it (the postmaster's pid, from its own pid file).
      local pid
      pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        log "pg_ctl stop failed; killing postmaster $pid"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start)
    start
    ;;
  stop)
    stop "${2:-}"
    ;;
  run)
    shift
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || die "usage: $0 run -- COMMAND [ARGS...]"
    eval "$(start)"
    trap 'stop "$X402_TEST_POSTGRES_DIR"' EXIT
    export X402_TEST_POSTGRES_URL X402_TEST_POSTGRES_DIR
    status=0
    "$@" || status=$?
    exit "$status"
    ;;
  *)
    die "usage: $0 start | stop DIR | run -- COMMAND [ARGS...]"
    ;;
esac
