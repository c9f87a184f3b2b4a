#!/usr/bin/env bash
# Regenerate the Python code for every protos/*.proto (messages, type stubs, gRPC stubs).
#
#   scripts/gen-protos.sh            # write protos/*_pb2.py, *_pb2.pyi, *_pb2_grpc.py
#   scripts/gen-protos.sh --out DIR  # write into DIR/protos/ instead (used by the stale check)
#
# Runs from the repository root with -I . so generated modules import each other as
# `protos.<name>_pb2`. Uses the grpcio-tools in the project's virtualenv (or $PYTHON).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root"
if [[ "${1:-}" == "--out" ]]; then
  out="$2"
  mkdir -p "$out/protos"
fi
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python="python3"; fi
fi

cd "$root"
shopt -s nullglob
protos=(protos/*.proto)
if (( ${#protos[@]} == 0 )); then
  echo "no protos/*.proto found under $root" >&2
  exit 1
fi
for proto in "${protos[@]}"; do
  "$python" -m grpc_tools.protoc -I . \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" "$proto"
  echo "generated ${proto%.proto}_pb2.py, _pb2.pyi, _pb2_grpc.py"
done
