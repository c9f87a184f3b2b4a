#!/usr/bin/env bash
# Azurite (the Azure Storage emulator) for the Table-storage round-robin state store.
#
#   scripts/azurite.sh install                 npm install azurite@3.35 into .cache/azurite (idempotent)
#   scripts/azurite.sh start [PORT] [WORKDIR]  start the Table service on 127.0.0.1:PORT (default 10002)
#                                              with data and azurite.pid in WORKDIR (default .run/azurite)
#   scripts/azurite.sh run [PORT] [WORKDIR]    the same in the foreground (exec: the caller owns the PID)
#   scripts/azurite.sh stop [WORKDIR]          stop the process named by WORKDIR/azurite.pid
#   scripts/azurite.sh bin                     print the azurite-table executable path
#   scripts/azurite.sh connection-string [PORT]
#
# Needs Node 20 and npm. Nothing is installed globally. AZURITE_DIR overrides .cache/azurite.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AZURITE_DIR="${AZURITE_DIR:-$ROOT/.cache/azurite}"
AZURITE_VERSION="3.35"
BIN="$AZURITE_DIR/node_modules/.bin/azurite-table"
# Azurite's documented, public development account key (not a secret).
DEV_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

die() { echo "azurite.sh: $*" >&2; exit 1; }

installed_version() {
  node -p "require('$AZURITE_DIR/node_modules/azurite/package.json').version" 2>/dev/null || true
}

cmd_install() {
  command -v npm >/dev/null || die "npm not found: install Node 20 (apt-get install nodejs npm)"
  local have; have="$(installed_version)"
  if [[ -x "$BIN" && "$have" == "$AZURITE_VERSION".* ]]; then
    echo "azurite $have already installed in $AZURITE_DIR"; return 0
  fi
  mkdir -p "$AZURITE_DIR"
  [[ -f "$AZURITE_DIR/package.json" ]] || echo '{"name":"azurite-local","private":true}' >"$AZURITE_DIR/package.json"
  (cd "$AZURITE_DIR" && npm install --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION")
  echo "azurite $(installed_version) installed in $AZURITE_DIR"
}

cmd_start() {
  local port="${1:-10002}" workdir="${2:-$ROOT/.run/azurite}"
  [[ -x "$BIN" ]] || die "azurite is not installed: run scripts/azurite.sh install"
  mkdir -p "$workdir"
  local pidfile="$workdir/azurite.pid"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    die "already running (pid $(cat "$pidfile")); stop it first: scripts/azurite.sh stop $workdir"
  fi
  "$BIN" --tableHost 127.0.0.1 --tablePort "$port" --location "$workdir" \
    --disableTelemetry --silent >"$workdir/azurite.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do  # up to 10 s for the port to accept connections
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "azurite table service on http://127.0.0.1:$port (pid $(cat "$pidfile"))"; return 0
    fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { cat "$workdir/azurite.log" >&2; die "azurite exited"; }
    sleep 0.1
  done
  cmd_stop "$workdir"; die "azurite did not listen on port $port within 10 s"
}

cmd_run() {
  local port="${1:-10002}" workdir="${2:-$ROOT/.run/azurite}"
  [[ -x "$BIN" ]] || die "azurite is not installed: run scripts/azurite.sh install"
  mkdir -p "$workdir"
  exec "$BIN" --tableHost 127.0.0.1 --tablePort "$port" --location "$workdir" --disableTelemetry --silent
}

cmd_stop() {
  local workdir="${1:-$ROOT/.run/azurite}" pidfile
  pidfile="$workdir/azurite.pid"
  [[ -f "$pidfile" ]] || { echo "azurite not running (no $pidfile)"; return 0; }
  local pid; pid="$(cat "$pidfile")"
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "azurite stopped (pid $pid)"
}

cmd_connection_string() {
  local port="${1:-10002}"
  echo "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$DEV_KEY;TableEndpoint=http://127.0.0.1:$port/devstoreaccount1;"
}

case "${1:-}" in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  run) shift; cmd_run "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  bin) echo "$BIN" ;;
  connection-string) shift; cmd_connection_string "$@" ;;
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
