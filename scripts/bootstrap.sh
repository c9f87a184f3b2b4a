#!/usr/bin/env bash
# Install what the gateway needs on a fresh machine. Idempotent: re-running skips what is there.
#   scripts/bootstrap.sh          Python runtime and the console client (.venv): scripts/run-local.sh
#   scripts/bootstrap.sh --dev    everything the tests use: dev packages, Azurite (npm),
#                                 the Node.js gRPC client, Debian's prometheus/wrk/hey/docker-compose
#                                 and chromium (headless: the Swagger UI test), and .venv-func313:
#                                 CPython 3.13 with requirements.txt, where tests/functions_runtime
#                                 runs function_app.py in azure-functions-runtime
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

req=requirements-client.txt
[ "$dev" = 1 ] && req=requirements-dev.txt
stamp=".venv/.installed-$(cat requirements.txt requirements-client.txt "$req" | sha256sum | cut -c1-16)-$dev"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: pip install -r $req"
  .venv/bin/pip install -q --disable-pip-version-check -r "$req"
  touch "$stamp"
fi
[ "$dev" = 1 ] || exit 0

# The Functions app on Python 3.13 (azure-functions-runtime needs >= 3.13). Looked for in order:
# $PYTHON313, python3.13 on PATH, pyenv's versions. None: the tests in tests/functions_runtime fail
# and say so.
find_python313() {
  local candidate
  for candidate in "${PYTHON313:-}" "$(command -v python3.13 || true)" \
      "${PYENV_ROOT:-${HOME:-/root}/.pyenv}"/versions/3.13*/bin/python3.13 /root/.pyenv/versions/3.13*/bin/python3.13 \
      /usr/local/bin/python3.13; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}
if [ ! -x .venv-func313/bin/python ]; then
  if python313=$(find_python313); then
    echo "bootstrap: creating .venv-func313 with $python313"
    "$python313" -m venv .venv-func313
  else
    echo "bootstrap: no CPython 3.13 found (PYTHON313, python3.13 on PATH, pyenv versions 3.13*):" \
      "tests/functions_runtime will fail until one is installed (e.g. pyenv install 3.13)" >&2
  fi
fi
if [ -x .venv-func313/bin/python ]; then
  stamp313=".venv-func313/.installed-$(sha256sum requirements.txt | cut -c1-16)"
  if [ ! -f "$stamp313" ]; then
    echo "bootstrap: .venv-func313: pip install -r requirements.txt"
    .venv-func313/bin/pip install -q --disable-pip-version-check -r requirements.txt
    touch "$stamp313"
  fi
fi

if [ -f scripts/azurite.sh ]; then
  bash scripts/azurite.sh install
fi
if [ -f clients/node/package.json ] && [ ! -d clients/node/node_modules ]; then
  echo "bootstrap: npm ci (clients/node)"
  npm ci --prefix clients/node --no-audit --no-fund --silent
fi

missing=()
for tool in prometheus wrk hey docker-compose chromium; do
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
