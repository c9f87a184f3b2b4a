"""bench/hot_path.py --quick against real processes (fake upstream, floor, REST gateways, gRPC host,
OIDC issuer): the report is complete and every route answered 200s. No timing assertions: the
figures are whatever this machine gives; only their presence and sanity are checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROUTES = {"direct", "floor", "/openai/chat", "compatible API", "/openai/chat jwt+limits+ledger", "floor stream",
          "/openai/stream (SSE)", "gRPC GetChatCompletions"}


def test_the_quick_hot_path_report_is_complete_and_every_route_served(tmp_path: Path) -> None:
    out = tmp_path / "hot_path.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "hot_path.py"), "--quick", "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    data = json.loads(out.read_text())
    rows = {row["route"]: row for row in data["rows"]}
    assert set(rows) == ROUTES
    for name, row in rows.items():
        assert row["errors"] == 0, (name, row)
        assert row["requests"] > 0 and row["rps_c16"] > 0 and row["p50_c1_ms"] > 0, (name, row)
        assert row["ratio_to_baseline"] > 0, (name, row)
    assert rows["floor"]["ratio_to_baseline"] == 1.0 and rows["/openai/stream (SSE)"]["baseline"] == "floor stream"
    assert set(data["ttft"]) == {"direct", "floor", "/openai/stream (SSE)", "compatible API"}
    for name, first in data["ttft"].items():
        assert first["errors"] == 0 and first["streams"] == 10 and first["p50_ms"] > 0, (name, first)
    features = data["features"]
    assert features["errors"] == 0 and features["on_rps"] > 0 and features["off_rps"] > 0
    rss = data["rss"]
    assert rss["errors"] == 0 and rss["requests"] >= 3_000
    assert 0 < rss["first_mb"] <= rss["max_mb"] and rss["last_mb"] <= rss["max_mb"]
    for name in ROUTES:  # the printed table names every route too
        assert name in result.stdout
