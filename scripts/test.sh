#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: installs what the tests need, then lints,
# type-checks, scans the Bicep and runs pytest (which starts and stops the simulator, Azurite
# and Prometheus itself). Extra arguments go to pytest, e.g. scripts/test.sh -k chat.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --dev
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"; ruff check .
echo "== mypy --strict core/ http_api/"; mypy
if [ -f scripts/checkov.sh ]; then echo "== checkov (Bicep)"; bash scripts/checkov.sh; fi
echo "== pytest"
set +e
python -m pytest -q "$@"
rc=$?
set -e
# pytest exit 5 = no tests collected: that is a failure of the suite, not a pass.
[ "$rc" = 5 ] && { echo "pytest collected no tests" >&2; exit 1; }
exit "$rc"
