#!/usr/bin/env bash
# Run the gateway locally on its embedded default: two simulated Azure OpenAI instances,
# the REST gateway on http://127.0.0.1:8000 and the gRPC host on 127.0.0.1:8002.
# Options are passed to `python -m localrun` (see --help), e.g. --state table, --config FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m localrun "$@"
