"""``python -m http_api`` as a user starts it: a real process on a free loopback port, its log
captured so tests can assert on what an operator would read (no tracebacks, one line per event)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from localrun.ports import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "config" / "appsettings.sample.json"


@dataclass
class RestProcess:
    url: str
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def requests_total(self, route: str, status: str) -> float:
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if (sample.name == "gateway_requests_total" and sample.labels.get("route") == route
                        and sample.labels.get("status") == status):
                    return sample.value
        return 0.0


@contextmanager
def rest_process(tmp_path: Path, config: Path = SAMPLE, **env: str) -> Iterator[RestProcess]:
    """The REST gateway with ``config`` (default: the sample, whose upstreams need not run for
    requests that never reach them) and extra environment (``RestHost__...``)."""
    port = free_port()
    log_path = tmp_path / f"http_api-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "http_api", "--config", str(config), "--port", str(port), "--log-level", "info"],
            cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc, what="python -m http_api")
        yield RestProcess(f"http://127.0.0.1:{port}", port, log_path)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def simulators(tmp_path: Path, *, per_token_latency_ms: int = 0) -> Iterator[dict[str, str]]:
    """Simulated AlphaOpenAI and BetaOpenAI (no content filter; no latency unless asked) as one
    process; yields the environment that points the sample settings at them."""
    alpha, beta = free_port(), free_port()
    with (tmp_path / "simulator.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "simulator", "--no-content-filter", "--log-level", "WARNING",
             *(["--latency-ms", "0", "--per-token-latency-ms", str(per_token_latency_ms)] if per_token_latency_ms
               else ["--zero-latency"]),
             "--instances", f"AlphaOpenAI:{alpha}:sim-key-alpha,BetaOpenAI:{beta}:sim-key-beta"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(alpha, proc, what="simulator AlphaOpenAI")
        wait_port(beta, proc, what="simulator BetaOpenAI")
        yield {"AzureOpenAI__Services__AlphaOpenAI__Endpoint": f"http://127.0.0.1:{alpha}/",
               "AzureOpenAI__Services__BetaOpenAI__Endpoint": f"http://127.0.0.1:{beta}/"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
