#!/usr/bin/env bash
# Install what the gateway needs on a fresh machine. Idempotent: re-running skips what is there.
#   scripts/bootstrap.sh          Python runtime only (.venv), enough for scripts/run-local.sh
#   scripts/bootstrap.sh --dev    everything the tests use: dev packages, Azurite (npm),
#                                 the Node.js gRPC client, Debian's prometheus/wrk/hey/docker-compose
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$python" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi

req=requirements.txt
[ "$dev" = 1 ] && req=requirements-dev.txt
stamp=".venv/.installed-$(cat requirements.txt "$req" | sha256sum | cut -c1-16)-$dev"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: pip install -r $req"
  .venv/bin/pip install -q --disable-pip-version-check -r "$req"
  touch "$stamp"
fi
[ "$dev" = 1 ] || exit 0

if [ -f scripts/azurite.sh ]; then
  bash scripts/azurite.sh install
fi
if [ -f clients/node/package.json ] && [ ! -d clients/node/node_modules ]; then
  echo "bootstrap: npm ci (clients/node)"
  npm ci --prefix clients/node --no-audit --no-fund --silent
fi

missing=()
for tool in prometheus wrk hey docker-compose; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "bootstrap: apt-get install ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "bootstrap: please install with apt: ${missing[*]} (needs root)" >&2
  fi
fi
# Debian starts the packaged prometheus as a service on :9090; the tests run their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
# checkov installs itself into .venv-checkov on first use (scripts/checkov.sh).
