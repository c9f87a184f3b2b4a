"""Both hosts, real processes, a real Prometheus: what the gateway counts is what PromQL returns.

Two simulated Azure OpenAI instances, the REST gateway (``python -m http_api``) and the gRPC
host (``python -m grpc_host``) run as processes with remote write pointed at the session
Prometheus, which also scrapes both hosts' ``/metrics``. After a known traffic mix over REST
and gRPC (chat, JSON and SSE streams, an unmapped tenant, a bad request), every per-tenant
token counter each host exposes equals what Prometheus returns from the push and from the
scrape, and every PromQL query of both Grafana dashboards returns data.

The REST host pushes every second; the gRPC host pushes every hour, so its values can only
arrive through the final flush when it shuts down (the last test).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from prom_server import PrometheusServer
from prometheus_client.parser import text_string_to_metric_families

from localrun.ports import free_port
from protos import openai_pb2, openai_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "infra" / "observability" / "grafana" / "dashboards"
KINDS = ("prompt", "completion", "total")
QUESTION = [{"role": "user", "content": "Tell me about Milan in two sentences."}]

pytestmark = pytest.mark.slow


@dataclass
class Stack:
    job: str
    rest_url: str
    rest_instance: str
    grpc_target: str
    grpc_metrics_url: str
    grpc_instance: str
    grpc_process: subprocess.Popen[bytes]
    sim_urls: tuple[str, ...]


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready within 60s: {log.read_text()[-3000:]}")


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _config(sim_ports: tuple[int, int], prometheus: PrometheusServer, job: str) -> dict[str, Any]:
    def service(port: int, key: str) -> dict[str, Any]:
        return {
            "Endpoint": f"http://127.0.0.1:{port}/",
            "ApiKey": key,
            "Deployment": "gpt-35-turbo-16k",
            "Model": "gpt-35-turbo-16k",
            "MaxRetries": 0,
        }

    return {
        "AzureOpenAI": {
            "Services": {
                "AlphaOpenAI": service(sim_ports[0], "sim-key-alpha"),
                "BetaOpenAI": service(sim_ports[1], "sim-key-beta"),
            }
        },
        "TenantAzureOpenAIMappings": {"contoso": "AlphaOpenAI", "fabrikam": "BetaOpenAI"},
        # The chargeback panels: cost from a price table, and every tenant under a (roomy) quota.
        "Pricing": {"gpt-35-turbo-16k": {"PromptPer1K": 0.0015, "CompletionPer1K": 0.002}},
        "Limits": {"Default": {"TokensPerMonth": 100_000_000}},
        "RemoteWrite": {
            "Enabled": True,
            "Url": prometheus.write_url,
            "Job": job,
            "IntervalSeconds": 1,
            "TimeoutSeconds": 5,
        },
    }


@pytest.fixture(scope="module")
def stack(prometheus: PrometheusServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("e2e")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AzureOpenAI__", "RemoteWrite__", "TenantAzureOpenAIMappings__", "GrpcHost__"))
    }
    env.pop("KeyVaultName", None)
    job = f"e2e-{uuid.uuid4().hex[:8]}"
    sim_ports = (free_port(), free_port())
    rest_port, grpc_port, grpc_metrics_port = free_port(), free_port(), free_port()
    config = work / "settings.json"
    config.write_text(json.dumps(_config(sim_ports, prometheus, job)))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        sim_urls = []
        for (name, key, seed), port in zip(
            (("AlphaOpenAI", "sim-key-alpha", "1"), ("BetaOpenAI", "sim-key-beta", "2")),
            sim_ports,
            strict=True,
        ):
            log = work / f"{name}.log"
            processes.append(
                _start(
                    [
                        "-m",
                        "simulator",
                        "--name",
                        name,
                        "--port",
                        str(port),
                        "--api-key",
                        key,
                        "--deployment",
                        "gpt-35-turbo-16k",
                        "--seed",
                        seed,
                    ],
                    log,
                    env,
                )
            )
            sim_urls.append(f"http://127.0.0.1:{port}")
            _wait_http(f"{sim_urls[-1]}/_sim/stats", processes[-1], log)
        rest = _start(
            ["-m", "http_api", "--config", str(config), "--port", str(rest_port)], work / "rest.log", env
        )
        processes.append(rest)
        grpc_env = {**env, "RemoteWrite__IntervalSeconds": "3600"}  # only the shutdown flush pushes
        grpc_host = _start(
            [
                "-m",
                "grpc_host",
                "--config",
                str(config),
                "--port",
                str(grpc_port),
                "--metrics-port",
                str(grpc_metrics_port),
            ],
            work / "grpc.log",
            grpc_env,
        )
        processes.append(grpc_host)
        rest_url = f"http://127.0.0.1:{rest_port}"
        _wait_http(f"{rest_url}/metrics", rest, work / "rest.log")
        _wait_http(f"http://127.0.0.1:{grpc_metrics_port}/metrics", grpc_host, work / "grpc.log")
        prometheus.set_targets(
            [
                {
                    "targets": [f"127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_metrics_port}"],
                    "labels": {"scrape_run": job},
                }
            ]
        )
        host = socket.gethostname()
        yield Stack(
            job,
            rest_url,
            f"{host}:{rest.pid}",
            f"127.0.0.1:{grpc_port}",
            f"http://127.0.0.1:{grpc_metrics_port}/metrics",
            f"{host}:{grpc_host.pid}",
            grpc_host,
            tuple(sim_urls),
        )
    finally:
        prometheus.set_targets([])
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _traffic(stack: Stack) -> None:
    """The known mix: REST chat / JSON stream / SSE stream / bad input / echo, gRPC chat and stream."""
    with httpx.Client(base_url=stack.rest_url, timeout=30) as client:
        for tenant, times in (("contoso", 3), ("fabrikam", 2), ("adventure-works", 1)):
            for _ in range(times):
                assert (
                    client.post("/openai/chat", params={"tenant": tenant}, json=QUESTION).status_code == 200
                )
        for _ in range(2):
            assert (
                client.post("/openai/stream", headers={"X-Tenant": "fabrikam"}, json=QUESTION).status_code
                == 200
            )
        sse = client.post(
            "/openai/stream",
            params={"tenant": "contoso"},
            json=QUESTION,
            headers={"Accept": "text/event-stream"},
        )
        assert sse.status_code == 200
        assert (
            client.post("/openai/chat", params={"tenant": "contoso"}, content=b"not json").status_code == 400
        )
        assert client.get("/openai/echo", params={"tenant": "contoso", "value": 7}).status_code == 200
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = openai_pb2_grpc.OpenAIServiceGrpcStub(channel)
        conversation = [openai_pb2.GrpcMessage(role="user", content=QUESTION[0]["content"])]
        for tenant in ("contoso", "contoso", "fabrikam"):
            reply = stub.GetChatCompletions(
                openai_pb2.GetChatCompletionsRequest(tenant=tenant, conversation=conversation), timeout=30
            )
            assert reply.result
        chunks = list(
            stub.GetChatCompletionsStreaming(
                openai_pb2.GetChatCompletionsRequest(tenant="fabrikam", conversation=conversation), timeout=30
            )
        )
        # Streamed, not buffered into one message, and no empty messages on the wire.
        assert len(chunks) > 1 and all(chunk.message for chunk in chunks)


def _counted(metrics_url: str) -> dict[str, dict[str, float]]:
    """{kind: {tenant: tokens}} as the host's /metrics exposes them (summed over instance, method)."""
    out: dict[str, dict[str, float]] = {kind: {} for kind in KINDS}
    for family in text_string_to_metric_families(httpx.get(metrics_url, timeout=10).text):
        for sample in family.samples:
            match = re.fullmatch(r"openai_(prompt|completion|total)_tokens_total", sample.name)
            if match:
                tenants = out[match.group(1)]
                tenant = sample.labels["tenant_name"]
                tenants[tenant] = tenants.get(tenant, 0.0) + sample.value
    return out


def _add(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        kind: {t: a[kind].get(t, 0.0) + b[kind].get(t, 0.0) for t in {*a[kind], *b[kind]}} for kind in KINDS
    }


@pytest.fixture(scope="module")
def counted(stack: Stack, prometheus: PrometheusServer) -> dict[str, dict[str, dict[str, float]]]:
    """Two traffic rounds (so rates exist); then each host's counters, per kind and tenant."""
    _traffic(stack)
    rest_first = _counted(f"{stack.rest_url}/metrics")
    prometheus.wait_until(
        lambda: _pushed(prometheus, stack.job, stack.rest_instance) == rest_first,
        "the REST host's first pushes arrive",
    )
    _traffic(stack)
    return {"rest": _counted(f"{stack.rest_url}/metrics"), "grpc": _counted(stack.grpc_metrics_url)}


def _pushed(prometheus: PrometheusServer, job: str, instance: str) -> dict[str, dict[str, float]]:
    return {
        kind: prometheus.values_by(
            f'sum by (tenant_name) (openai_{kind}_tokens_total{{job="{job}", instance="{instance}"}})',
            "tenant_name",
        )
        for kind in KINDS
    }


def test_scrape_path_shows_what_each_host_counted(
    stack: Stack, counted: dict[str, dict[str, dict[str, float]]], prometheus: PrometheusServer
) -> None:
    rest_target = stack.rest_url.removeprefix("http://")
    grpc_target = stack.grpc_metrics_url.removeprefix("http://").removesuffix("/metrics")

    def scraped(target: str) -> dict[str, dict[str, float]]:
        return {
            kind: prometheus.values_by(
                f"sum by (tenant_name) (openai_{kind}_tokens_total"
                f'{{scrape_run="{stack.job}", instance="{target}"}})',
                "tenant_name",
            )
            for kind in KINDS
        }

    prometheus.wait_until(
        lambda: scraped(rest_target) == counted["rest"] and scraped(grpc_target) == counted["grpc"],
        "the scrapes show the counted tokens",
    )
    assert set(counted["rest"]["total"]) == {"contoso", "fabrikam", "adventure-works"}
    assert set(counted["grpc"]["total"]) == {"contoso", "fabrikam"}


def test_rest_host_push_returns_exactly_the_counted_tokens(
    stack: Stack, counted: dict[str, dict[str, dict[str, float]]], prometheus: PrometheusServer
) -> None:
    prometheus.wait_until(
        lambda: _pushed(prometheus, stack.job, stack.rest_instance) == counted["rest"],
        "the REST host's pushed counters equal its /metrics",
    )
    assert all(value > 0 for kind in KINDS for value in counted["rest"][kind].values())
    rest = counted["rest"]
    for tenant, total in rest["total"].items():
        assert rest["prompt"][tenant] + rest["completion"][tenant] == total


def _dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, title, PromQL) for every panel target and every label_values() variable."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append((path.name, panel["title"], target["expr"]))
        for variable in board["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable.get("definition", ""))
            if match:
                out.append(
                    (
                        path.name,
                        f"variable {variable['name']}",
                        f"group by ({match.group(2)}) ({match.group(1)})",
                    )
                )
    return out


def _substitute(expr: str, job: str) -> str:
    """Grafana's variables as a user looking at this run would pick them."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__range", "10m").replace("$__interval", "15s")
    expr = expr.replace('job=~"$job"', f'job=~"{job}|scrape"')
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def test_every_dashboard_query_returns_data(
    stack: Stack, counted: dict[str, dict[str, dict[str, float]]], prometheus: PrometheusServer
) -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 2 * 17
    prometheus.wait_until(
        lambda: _pushed(prometheus, stack.job, stack.rest_instance) == counted["rest"],
        "the second traffic round is pushed",
    )
    empty = [
        (board, title, _substitute(expr, stack.job))
        for board, title, expr in queries
        if not prometheus.query(_substitute(expr, stack.job))
    ]
    assert empty == []


def test_grpc_host_pushes_its_final_values_when_it_shuts_down(
    stack: Stack, counted: dict[str, dict[str, dict[str, float]]], prometheus: PrometheusServer
) -> None:
    assert _pushed(prometheus, stack.job, stack.grpc_instance) == {kind: {} for kind in KINDS}
    stack.grpc_process.send_signal(signal.SIGTERM)
    assert stack.grpc_process.wait(timeout=30) == 0
    assert _pushed(prometheus, stack.job, stack.grpc_instance) == counted["grpc"]
    (row,) = prometheus.query(
        f'gateway_remote_write_pushes_total{{job="{stack.job}", instance="{stack.grpc_instance}"}}'
    )
    assert float(row["value"][1]) == 0, "the shutdown flush was the gRPC host's only push"

    both = _add(counted["rest"], counted["grpc"])
    everything = {
        kind: prometheus.values_by(
            f'sum by (tenant_name) (openai_{kind}_tokens_total{{job="{stack.job}"}})', "tenant_name"
        )
        for kind in KINDS
    }
    assert everything == both
    generated = sum(
        httpx.get(f"{url}/_sim/stats", timeout=5).json()["generated"]["total_tokens"]
        for url in stack.sim_urls
    )
    assert sum(both["total"].values()) == generated, "the gateway counted every token the upstreams generated"
