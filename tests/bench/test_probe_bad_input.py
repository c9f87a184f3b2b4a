"""bench/probe_bad_input.py holds: >= 100 bad REST inputs and >= 30 bad gRPC inputs, no server
error, no traceback, no unanswered connection, hang-ups counted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_bad_input_probe_passes():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "probe_bad_input.py")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    out = result.stdout
    assert result.returncode == 0, out[-6000:] + result.stderr[-2000:]
    counts = re.search(r"REST cases (\d+), gRPC cases (\d+)", out)
    assert counts and int(counts[1]) >= 100 and int(counts[2]) >= 30, out
    assert "server errors (5xx / INTERNAL, UNKNOWN, DATA_LOSS, UNAVAILABLE): 0" in out
    assert "unanswered connections: 0" in out
    assert "tracebacks in logs: {'rest': 0, 'grpc': 0}" in out
    assert out.rstrip().splitlines()[-2] == "RESULT: PASS"
