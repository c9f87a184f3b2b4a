"""schemathesis against /openapi.json of the running gateway (simulated upstreams): no server
errors, and every response conforms to the document (status, content type, schema, headers).

The Azure OpenAI-compatible routes are left out here: their bodies are OpenAI's own schema, passed
through to the upstream as they are, so random bodies mostly test the simulator. They are covered
by the official SDK in tests/http_api/test_compat_api.py, bad bodies included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rest_process import rest_process, simulators

COMPAT = r"^/openai/(deployments/|v1/|responses)"
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(tmp_path: Path):
    with simulators(tmp_path) as upstreams, rest_process(tmp_path, **upstreams) as server:
        result = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json", "--checks", CHECKS,
             "--max-examples", "50", "--seed", "1", "--generation-database", "none", "--no-color",
             "--exclude-path-regex", COMPAT],
            cwd=tmp_path, capture_output=True, text=True, timeout=240)
        log = server.log()
    report = result.stdout[-4000:]
    assert result.returncode == 0, report
    assert "No issues found" in report and "6 selected / 12 total" in result.stdout, report
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
