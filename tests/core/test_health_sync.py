"""Replicas share instance health through the state store's table (real Azurite, real SDK)."""

from __future__ import annotations

import asyncio
import time

import httpx
from gateway_stack import gateway_stack, serve_app, settings_from, settings_tree

from core._health import Health
from core._health_sync import HealthSync
from core.config import CircuitBreakerSettings
from core.state import BoardUnavailable, HealthRecord, TableLocation
from core.state._health_table import table_health_board

QUESTION = [{"role": "user", "content": "Tell me about Milan"}]


def table_settings(azurite, table: str) -> dict:
    return {"StateStore": {"Type": "table", "ConnectionString": azurite.connection_string, "TableName": table},
            "Gateway": {"UnhealthyCooldownSeconds": 1, "HealthSyncSeconds": 1}}


async def test_a_cooldown_learned_by_one_replica_reaches_the_other_within_two_seconds(tmp_path, azurite):
    overrides = table_settings(azurite, "healthsync1")
    cooling = 'gateway_instance_state{openai_name="alphaopenai",state="cooling"} 1.0'
    async with gateway_stack(tmp_path, **overrides) as first:
        tree = settings_tree({"AlphaOpenAI": first.alpha, "BetaOpenAI": first.beta}, **overrides)
        async with serve_app(settings_from(tree, tmp_path)) as second_url, httpx.AsyncClient(
            base_url=second_url
        ) as second:
            first.alpha.set_fault(status=429, retry_after_ms=20_000, retry_style="seconds")
            learned = await first.client.post("/openai/chat?tenant=contoso", json=QUESTION)
            started = time.perf_counter()
            for _ in range(100):  # /metrics reads memory: Alpha is never asked meanwhile
                if cooling in (await second.get("/metrics")).text:
                    break
                await asyncio.sleep(0.05)
            spread = time.perf_counter() - started
            pinned = [await second.post("/openai/chat?tenant=contoso", json=QUESTION) for _ in range(5)]
            unpinned = [await second.post("/openai/chat?tenant=acme", json=QUESTION) for _ in range(10)]
    print(f"\ncool-down shared in {spread:.2f} s")
    assert learned.status_code == 429  # the first replica learned it: Alpha cools for 20 s
    assert spread < 2.5
    assert all(r.status_code == 429 and int(r.headers["retry-after"]) > 10 for r in pinned)
    assert first.alpha.stats.requests == 1  # the second replica never asked Alpha
    assert all(r.status_code == 200 and r.headers["x-gateway-instance"] == "BetaOpenAI" for r in unpinned)


async def test_open_circuit_and_misconfiguration_round_trip_through_the_table(azurite):
    location = TableLocation("healthsync2", connection_string=azurite.connection_string)
    breaker = CircuitBreakerSettings(failures=1, open_seconds=30)
    one, two = Health(["a", "b"], breaker), Health(["a", "b"], breaker)
    sync_one = HealthSync(one, table_health_board(location), interval_seconds=1)
    sync_two = HealthSync(two, table_health_board(location), interval_seconds=1)
    one.failed("a")
    one.misconfigure("b", 60, "check AzureOpenAI:Services:b:ApiKey")
    await sync_one.sync_once()
    await sync_two.sync_once()
    assert two.state("a") == "open" and 29 < two.recovery_in("a") <= 30
    assert two.state("b") == "misconfigured"
    assert two.misconfigured_detail("b") == "check AzureOpenAI:Services:b:ApiKey"
    await sync_one.aclose()
    await sync_two.aclose()


class StoppedBoard:
    """A board whose storage is down (what the Table adapter raises when Azurite is gone)."""

    async def read(self) -> list[HealthRecord]:
        raise BoardUnavailable("error", "Table storage unreachable (ServiceRequestError)")

    async def publish(self, records) -> None:
        raise AssertionError("not reached")

    async def aclose(self) -> None:
        return None


async def test_storage_down_keeps_local_health_and_the_loop_alive():
    health = Health(["a"], CircuitBreakerSettings())
    sync = HealthSync(health, StoppedBoard(), interval_seconds=0.01)
    await sync.start()
    health.cool_down("a", 5)
    await asyncio.sleep(0.05)
    assert health.state("a") == "cooling"
    assert sync._task is not None and not sync._task.done()
    await sync.aclose()
