"""A Prometheus process (Debian's ``prometheus`` 2.42) for tests: start, query, scrape targets, stop.

Listens on 127.0.0.1 with ``--web.enable-remote-write-receiver`` and scrapes whatever targets
a test writes into its file-SD targets file, every second. Stopped by its PID.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

PROMETHEUS = shutil.which("prometheus")


def require_prometheus() -> str:
    if PROMETHEUS:
        return PROMETHEUS
    pytest.fail("Debian's prometheus is not installed: run scripts/bootstrap.sh --dev")


@dataclass
class PrometheusServer:
    """One Prometheus process; stopped by its PID."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def write_url(self) -> str:
        return f"{self.url}/api/v1/write"

    @property
    def targets_file(self) -> Path:
        return self.workdir / "targets.json"

    def start(self) -> PrometheusServer:
        binary = require_prometheus()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.set_targets([])
        config = self.workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: scrape\n    scrape_interval: 1s\n"
            f"    file_sd_configs:\n      - files: ['{self.targets_file}']\n        refresh_interval: 1s\n"
        )
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-remote-write-receiver",
                 "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready within 60s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def set_targets(self, groups: list[dict[str, Any]]) -> None:
        """Replace the scrape targets, e.g. ``[{"targets": ["127.0.0.1:8000"]}]`` (atomically)."""
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """``/api/v1/query`` at the server's now; the result vector (raises on a query error)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"query failed: {promql}: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def values_by(self, promql: str, label: str) -> dict[str, float]:
        return {row["metric"].get(label, ""): float(row["value"][1]) for row in self.query(promql)}

    def wait_until(self, check: Callable[[], bool], what: str, seconds: float = 45) -> None:
        """Poll ``check`` (bounded) until it holds; fail naming ``what``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.25)
        raise AssertionError(f"not within {seconds:g}s: {what}")


