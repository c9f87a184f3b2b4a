"""The remote-write pusher against a real Prometheus (``--web.enable-remote-write-receiver``).

What a user notices: the token counters a push sends are exactly what PromQL returns, the
scrape path of the same registry shows the same numbers, and while the receiver is down
requests still succeed, a failure counter rises, and the first push after recovery delivers
the current values.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from aiohttp import web
from prom_server import PrometheusServer
from prometheus_client import CollectorRegistry, Counter, generate_latest

from core import ChatMessage, build_gateway, load_settings
from core.config import RemoteWriteSettings
from core.telemetry._remote_write import RemoteWritePusher, RetryPolicy
from localrun.ports import free_port
from simulator import DeploymentConfig, SimulatorConfig, run_simulator

FAST = RetryPolicy(attempts=2, initial_backoff_seconds=0.05, max_backoff_seconds=0.1)
TENANT_TOKENS = {"contoso": 1234.0, "fabrikam": 56.0, "adventure-works": 7.0}


def _token_registry() -> tuple[CollectorRegistry, Counter]:
    registry = CollectorRegistry()
    counter = Counter("openai_total_tokens", "Total tokens.", ("openai_name", "tenant_name", "method_name"),
                      registry=registry)
    for tenant, tokens in TENANT_TOKENS.items():
        counter.labels("alphaopenai", tenant, "chat").inc(tokens)
    return registry, counter


async def test_push_makes_promql_return_exactly_the_counted_tokens(prometheus: PrometheusServer) -> None:
    registry, _ = _token_registry()
    instance = f"push-{uuid.uuid4().hex[:8]}"
    settings = RemoteWriteSettings(enabled=True, url=prometheus.write_url, job="openai-gateway",
                                   instance=instance)
    pusher = RemoteWritePusher(settings, registry, retry=FAST)
    assert await pusher.push_now() is True
    await pusher.aclose()

    got = prometheus.values_by(
        f'sum by (tenant_name) (openai_total_tokens_total{{instance="{instance}"}})', "tenant_name")
    assert got == TENANT_TOKENS
    (row,) = prometheus.query(f'gateway_remote_write_pushes_total{{instance="{instance}"}}')
    assert row["metric"]["job"] == "openai-gateway"


@pytest.fixture
async def served_registry() -> AsyncIterator[tuple[CollectorRegistry, str]]:
    """The registry exposed on a real /metrics endpoint on 127.0.0.1 (what a scrape reads)."""
    registry, _ = _token_registry()

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield registry, f"127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_scrape_path_shows_the_same_counters_as_the_push(
    prometheus: PrometheusServer, served_registry: tuple[CollectorRegistry, str]
) -> None:
    registry, target = served_registry
    instance = f"both-{uuid.uuid4().hex[:8]}"
    pusher = RemoteWritePusher(RemoteWriteSettings(enabled=True, url=prometheus.write_url, instance=instance),
                               registry, retry=FAST)
    assert await pusher.push_now()
    await pusher.aclose()
    prometheus.set_targets([{"targets": [target], "labels": {"test": instance}}])
    scraped = f'sum by (tenant_name) (openai_total_tokens_total{{test="{instance}"}})'
    await asyncio.to_thread(prometheus.wait_until,
                            lambda: prometheus.values_by(scraped, "tenant_name") == TENANT_TOKENS,
                            f"a scrape of {target} shows the counted tokens")
    pushed = prometheus.values_by(
        f'sum by (tenant_name) (openai_total_tokens_total{{instance="{instance}"}})', "tenant_name")
    assert pushed == prometheus.values_by(scraped, "tenant_name") == TENANT_TOKENS
    prometheus.set_targets([])


async def test_receiver_down_requests_unaffected_then_recovery_delivers_current_values(
    make_prometheus: Callable[[int], PrometheusServer],
) -> None:
    port = free_port()  # nothing listens here yet: the receiver is down
    sim = await run_simulator(SimulatorConfig(
        name="AlphaOpenAI", api_key="sim-key-alpha", seed=1,
        deployments=(DeploymentConfig(name="gpt-35-turbo-16k", model="gpt-35-turbo-16k", tpm=0, rpm=0),)),
        host="127.0.0.1", port=0)
    instance = f"down-{uuid.uuid4().hex[:8]}"
    settings = load_settings(environ={
        "AzureOpenAI__Services__AlphaOpenAI__Endpoint": sim.url,
        "AzureOpenAI__Services__AlphaOpenAI__ApiKey": "sim-key-alpha",
        "AzureOpenAI__Services__AlphaOpenAI__Deployment": "gpt-35-turbo-16k",
        "TenantAzureOpenAIMappings__contoso": "AlphaOpenAI",
        "RemoteWrite__Enabled": "true",
        "RemoteWrite__Url": f"http://127.0.0.1:{port}/api/v1/write",
        "RemoteWrite__Instance": instance,
        "RemoteWrite__IntervalSeconds": "0.3",
        "RemoteWrite__TimeoutSeconds": "2",
    })
    gateway = build_gateway(settings)
    await gateway.start()
    failures = 'gateway_remote_write_failures_total'
    try:
        for _ in range(3):  # requests succeed while every push fails
            completion = await gateway.chat("contoso", [ChatMessage("user", "Tell me about Milan")])
            assert completion.text
        for _ in range(300):  # bounded: until two pushes have failed
            if (gateway.registry.get_sample_value(failures, {"reason": "connection"}) or 0) >= 2:
                break
            await asyncio.sleep(0.05)
        assert gateway.registry.get_sample_value(failures, {"reason": "connection"}) >= 2
        assert gateway.registry.get_sample_value("gateway_remote_write_pushes_total") == 0

        await gateway.chat("contoso", [ChatMessage("user", "And about Rome?")])
        counted = gateway.registry.get_sample_value(
            "openai_total_tokens_total",
            {"openai_name": "alphaopenai", "tenant_name": "contoso", "method_name": "chat"})
        assert counted and counted == (await asyncio.to_thread(_sim_total_tokens, sim.url))

        receiver = await asyncio.to_thread(make_prometheus, port)  # the receiver comes back
        query = f'sum by (tenant_name) (openai_total_tokens_total{{instance="{instance}"}})'
        await asyncio.to_thread(receiver.wait_until,
                                lambda: receiver.values_by(query, "tenant_name") == {"contoso": counted},
                                "the first push after recovery delivers the current value")
        rows = receiver.values_by(f'{failures}{{instance="{instance}",reason="connection"}}', "reason")
        assert rows["connection"] >= 2, "the failures are pushed too once the receiver is back"
    finally:
        await gateway.aclose()
        await sim.stop()


def _sim_total_tokens(url: str) -> float:
    stats = httpx.get(f"{url.rstrip('/')}/_sim/stats", timeout=5).json()
    return float(stats["generated"]["total_tokens"])
