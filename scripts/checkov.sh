#!/usr/bin/env bash
# Static security scan of infra/bicep with checkov, in its own virtual environment
# (.venv-checkov at the repo root: checkov pins an older pycep-parser than the tests use).
# Creates the venv on first use (idempotent), then scans offline (--skip-download).
# Exits non-zero when a check fails or when a .bicep file cannot be parsed (a file checkov
# cannot parse would otherwise be silently unchecked).
# Usage: scripts/checkov.sh [extra checkov args]
#   CHECKOV_VERSION (default 3.3.30) pins the version; CHECKOV_TARGET scans another folder.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-checkov"
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
TARGET="${CHECKOV_TARGET:-$ROOT/infra/bicep}"

installed="$("$VENV/bin/checkov" --version 2>/dev/null || true)"
if [[ "$installed" != "$CHECKOV_VERSION" ]]; then
  echo "checkov.sh: installing checkov $CHECKOV_VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi

report="$(mktemp)"
trap 'rm -f "$report"' EXIT
status=0
"$VENV/bin/checkov" --framework bicep --skip-download --directory "$TARGET" \
  --compact --quiet "$@" >"$report" 2>&1 || status=$?
cat "$report"

if grep -q 'Error parsing file\|Parsing errors: [1-9]' "$report"; then
  echo "checkov.sh: some .bicep files could not be parsed by checkov's pycep; keep to the syntax it supports (docs/deploy.md)" >&2
  exit 1
fi
if ((status != 0)); then
  echo "checkov.sh: failed checks above: fix them or skip inline with '// checkov:skip=<ID>:<reason>'" >&2
fi
exit "$status"
