"""The local run as real processes: two simulators, the gRPC host and the REST app (uvicorn).

Everything binds 127.0.0.1 on free ports and is stopped by its PID at the end of the session.
The REST app is started only once `http_api.app:create_app` exists in the tree.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from localrun.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
DEPLOYMENT = "gpt-35-turbo-16k"
INSTANCES = {"AlphaOpenAI": "sim-key-alpha", "BetaOpenAI": "sim-key-beta"}


def _wait_tcp(port: int, proc: subprocess.Popen[bytes], log: Path, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} not open after {seconds}s:\n{log.read_text()[-3000:]}")


@dataclass
class Processes:
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        handle = log.open("wb")
        proc = subprocess.Popen(
            args, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        handle.close()
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.started:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@dataclass(frozen=True)
class LocalRun:
    sim_ports: dict[str, int]
    grpc_target: str
    grpc_metrics_url: str
    rest_url: str | None

    def sim_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.sim_ports[name]}"

    def sim_requests(self) -> dict[str, int]:
        """Chat requests each simulated instance has received so far, by lower-cased instance name."""
        return {
            name.lower(): int(httpx.get(f"{self.sim_url(name)}/_sim/stats", timeout=5).json()["requests"])
            for name in self.sim_ports
        }

    def set_fault(self, name: str, **fault: object) -> None:
        httpx.post(f"{self.sim_url(name)}/_sim/faults", json=fault, timeout=5).raise_for_status()

    def clear_faults(self) -> None:
        for name in self.sim_ports:
            httpx.delete(f"{self.sim_url(name)}/_sim/faults", timeout=5).raise_for_status()

    def wait_until_instances_closed(self, seconds: float = 10.0) -> None:
        """Wait until both hosts take every instance again: a 429 makes the gateway cool an
        instance for the time it asked (docs/failover.md), which outlives the fault itself."""
        urls = [self.grpc_metrics_url] + ([f"{self.rest_url}/metrics"] if self.rest_url else [])
        deadline = time.monotonic() + seconds
        while any(_instances_out(url) for url in urls):
            if time.monotonic() > deadline:
                raise AssertionError(f"an instance is still out of rotation after {seconds} s")
            time.sleep(0.1)


def _instances_out(metrics_url: str) -> bool:
    text = httpx.get(metrics_url, timeout=5).text
    return any(
        sample.value == 1.0 and sample.labels.get("state") != "closed"
        for family in text_string_to_metric_families(text)
        if family.name == "gateway_instance_state"
        for sample in family.samples
    )


def gateway_config(sim_ports: dict[str, int]) -> dict[str, object]:
    services = {
        name: {
            "Endpoint": f"http://127.0.0.1:{sim_ports[name]}",
            "ApiKey": key,
            "Deployment": DEPLOYMENT,
            "Model": DEPLOYMENT,
            "MaxRetries": 0,
        }
        for name, key in INSTANCES.items()
    }
    return {
        "AzureOpenAI": {"SystemPrompt": "You are a helpful assistant.", "Services": services},
        "TenantAzureOpenAIMappings": {"contoso": "AlphaOpenAI", "fabrikam": "BetaOpenAI"},
    }


def start_local_run(tmp: Path, procs: Processes) -> LocalRun:
    """Start simulators, gRPC host and the REST app; wait until they listen."""
    sim_ports = {name: free_port() for name in INSTANCES}
    spec = ",".join(f"{name}:{sim_ports[name]}:{key}" for name, key in INSTANCES.items())
    sim = procs.start(
        [PYTHON, "-m", "simulator", "--instances", spec, "--deployment", DEPLOYMENT, "--seed", "7"],
        tmp / "simulator.log",
    )
    for port in sim_ports.values():
        _wait_tcp(port, sim, tmp / "simulator.log")
    config = tmp / "gateway.json"
    config.write_text(json.dumps(gateway_config(sim_ports)))

    grpc_port, metrics_port = free_port(), free_port()
    grpc = procs.start(
        [
            PYTHON,
            "-m",
            "grpc_host",
            "--config",
            str(config),
            "--port",
            str(grpc_port),
            "--metrics-port",
            str(metrics_port),
            "--grace-seconds",
            "1",
        ],
        tmp / "grpc_host.log",
    )
    _wait_tcp(grpc_port, grpc, tmp / "grpc_host.log")
    _wait_tcp(metrics_port, grpc, tmp / "grpc_host.log")

    rest_port = free_port()
    rest = procs.start(
        [
            PYTHON,
            "-m",
            "uvicorn",
            "--factory",
            "http_api.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(rest_port),
            "--log-level",
            "warning",
        ],
        tmp / "http_api.log",
        env={"GATEWAY_CONFIG": str(config)},
    )
    _wait_tcp(rest_port, rest, tmp / "http_api.log")
    rest_url = f"http://127.0.0.1:{rest_port}"
    return LocalRun(sim_ports, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{metrics_port}/metrics", rest_url)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, keyed by (name, sorted labels)."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def tenant_tokens(
    before: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    after: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    name: str,
) -> dict[str, int]:
    """Per-tenant increase of a token counter between two scrapes (summed over instances and methods)."""
    totals: dict[str, int] = {}
    for (sample, labels), value in after.items():
        if sample != name:
            continue
        tenant = dict(labels)["tenant_name"]
        totals[tenant] = totals.get(tenant, 0) + int(value - before.get((sample, labels), 0.0))
    return {tenant: value for tenant, value in totals.items() if value}
