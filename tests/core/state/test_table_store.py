"""The Azure Table round-robin state store against a real Azurite (and real worker processes)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables.aio import TableClient, TableServiceClient
from prometheus_client import CollectorRegistry

from core import (
    ChatMessage,
    ConfigurationError,
    GatewayError,
    MemoryStateStore,
    Settings,
    build_gateway,
    load_settings,
)
from core._build import build_state_store
from core.state._table import TableStateStore
from simulator import DeploymentConfig, SimulatorConfig, SimulatorServer, run_simulator

Azurite = Any  # tests/core/conftest.py: .connection_string, .stop(), .start()
WORKER = Path(__file__).with_name("table_worker.py")
DEV_KEY_PREFIX = "Eby8vdM02xNOcqFlqUwJ"  # Azurite's public account key, which must not reach logs anyway
INSTANCES = 3


def table_settings(connection_string: str, **state_store: Any) -> Settings:
    values = {"type": "table", "connectionstring": connection_string, "timeoutms": 10_000, **state_store}
    return Settings.model_validate({"statestore": values})


def make_store(
    connection_string: str, registry: CollectorRegistry | None = None, probe: float = 5.0, **kw: Any
) -> TableStateStore:
    store = build_state_store(
        table_settings(connection_string, **kw),
        registry=registry or CollectorRegistry(),
        probe_interval_seconds=probe,
    )
    assert isinstance(store, TableStateStore)
    return store


def run_workers(azurite: Azurite, *, table: str, lease: int, processes: int = 4, count: int = 250) -> list[int]:
    """``processes`` OS processes, started together, each taking ``count`` slots; all slots taken."""
    job = {"connection_string": azurite.connection_string, "table": table, "pool": "default",
           "lease": lease, "count": count, "concurrency": 4}  # fmt: skip
    procs = [
        subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert all(r["fallbacks"] == 0 for r in results), "a worker fell back to local state"
    return [slot for r in results for slot in r["slots"]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spread(slots: list[int]) -> int:
    counts = Counter(slot % INSTANCES for slot in slots)
    return max(counts.values()) - min(counts.get(i, 0) for i in range(INSTANCES))


def test_four_processes_with_lease_1_take_every_slot_once_and_alternate(azurite: Azurite) -> None:
    slots = run_workers(azurite, table="procsk1", lease=1)
    assert sorted(slots) == list(range(1000))  # no duplicate, no gap
    assert spread(slots) <= 1


def test_four_processes_with_lease_8_never_share_a_slot(azurite: Azurite) -> None:
    slots = run_workers(azurite, table="procsk8", lease=8)
    assert len(set(slots)) == len(slots) == 1000
    assert spread(slots) <= 8 * 4


async def test_concurrent_callers_in_one_process_never_share_a_slot(azurite: Azurite) -> None:
    stores = [make_store(azurite.connection_string, tablename="asyncio") for _ in range(2)]
    try:
        results = await asyncio.gather(*(stores[i % 2].next_slot("p") for i in range(400)))
    finally:
        for store in stores:
            await store.aclose()
    assert sorted(results) == list(range(400))


async def test_slots_continue_across_restarts_and_pools_are_separate(azurite: Azurite) -> None:
    first = make_store(azurite.connection_string, tablename="restarts")
    taken = [await first.next_slot("a/b#c?") for _ in range(3)] + [await first.next_slot("a%2Fb")]
    await first.aclose()
    second = make_store(azurite.connection_string, tablename="restarts")
    again = await second.next_slot("a/b#c?")
    await second.aclose()
    assert taken == [0, 1, 2, 0]
    assert again == 3


async def test_lease_takes_k_slots_per_write(azurite: Azurite) -> None:
    """With K = 16 a second instance starts after the first one's whole lease."""
    one = make_store(azurite.connection_string, tablename="leases", leasesize=16)
    two = make_store(azurite.connection_string, tablename="leases", leasesize=16)
    try:
        a = [await one.next_slot("p") for _ in range(3)]
        b = await two.next_slot("p")
    finally:
        await one.aclose()
        await two.aclose()
    assert a == [0, 1, 2]
    assert b == 16


async def test_leases_read_ahead_without_skipping_slots(azurite: Azurite) -> None:
    one = make_store(azurite.connection_string, tablename="readahead", leasesize=4)
    two = make_store(azurite.connection_string, tablename="readahead", leasesize=4)
    try:
        a = [await one.next_slot("p") for _ in range(16)]
        b = await two.next_slot("p")
    finally:
        await one.aclose()
        await two.aclose()
    assert a == list(range(16))
    assert b >= 16 and b % 4 == 0


async def test_table_is_created_when_missing(azurite: Azurite) -> None:
    store = make_store(azurite.connection_string, tablename="createdonuse")
    assert await store.next_slot("p") == 0
    await store.aclose()
    async with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        names = [t.name async for t in service.list_tables()]
    assert "createdonuse" in names


def fallbacks(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("gateway_state_store_fallbacks_total", {"reason": reason}) or 0.0


@pytest.mark.parametrize("lease", [1, 4])
async def test_storage_outage_is_served_locally_and_shared_state_returns(private_azurite: Azurite, lease: int) -> None:
    registry = CollectorRegistry()
    conn = private_azurite.connection_string
    store = make_store(conn, registry, probe=0.2, tablename="outage", timeoutms=250, leasesize=lease)
    try:
        before = [await store.next_slot("p") for _ in range(20)]
        private_azurite.stop()
        during = [await store.next_slot("p") for _ in range(200)]
        assert registry.get_sample_value("gateway_state_store_shared") == 0
        assert fallbacks(registry, "error") + fallbacks(registry, "timeout") >= 1
        private_azurite.start()
        for _ in range(200):  # bounded: the store probes again after 0.2 s
            await asyncio.sleep(0.05)
            await store.next_slot("p")
            if registry.get_sample_value("gateway_state_store_shared") == 1:
                break
        assert registry.get_sample_value("gateway_state_store_shared") == 1
        after = await store.next_slot("p")
    finally:
        await store.aclose()
    assert before == list(range(20))
    assert during == list(range(20, 220))  # local state continues where the lease ended
    async with TableClient.from_connection_string(private_azurite.connection_string, "outage") as table:
        entity = await table.get_entity("p", "rr")
    assert entity["Next"].value > after  # the slot came from the table, which moved past it


async def test_a_silent_store_costs_at_most_the_time_budget(
    storage_connection_string: Callable[[int], str],
) -> None:
    """A TCP server that accepts and never answers: selections fall back on the timeout."""

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 20)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    registry = CollectorRegistry()
    silent = storage_connection_string(port)
    store = make_store(silent, registry, tablename="silent", timeoutms=100)
    try:
        slots = [await store.next_slot("p") for _ in range(50)]
    finally:
        await store.aclose()
        server.close()
    assert slots == list(range(50))
    assert fallbacks(registry, "timeout") == 50
    assert registry.get_sample_value("gateway_state_store_shared") == 0


async def test_fallback_is_logged_at_most_once_a_minute_without_secrets(
    storage_connection_string: Callable[[int], str], caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens on the port: every selection probes (interval 0), fails and falls back."""
    registry = CollectorRegistry()
    store = make_store(storage_connection_string(free_port()), registry, probe=0.0, tablename="refused")
    with caplog.at_level(logging.INFO, logger="core.state_store"):
        slots = [await store.next_slot("p") for _ in range(30)]
    await store.aclose()
    assert slots == list(range(30))
    assert fallbacks(registry, "error") == 30
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "local state" in warnings[0].getMessage()
    assert "AccountKey" not in caplog.text and DEV_KEY_PREFIX not in caplog.text


def test_memory_type_builds_the_in_memory_store() -> None:
    store = build_state_store(Settings(), registry=CollectorRegistry())
    assert isinstance(store, MemoryStateStore)


@pytest.mark.parametrize(
    ("state_store", "web_jobs", "location"),
    [
        ({}, {"accountname": "acct"}, "https://acct.table.core.windows.net/gatewaystate"),
        ({}, {"tableserviceuri": "https://t.example.net"}, "https://t.example.net/gatewaystate"),
        ({}, {"connectionstring": "UseDevelopmentStorage=true"}, "http://127.0.0.1:10002/devstoreaccount1/gatewaystate"),
        ({"tableserviceuri": "https://own.example.net", "tablename": "roundrobin"},
         {"connectionstring": "UseDevelopmentStorage=true"}, "https://own.example.net/roundrobin"),
    ],
)  # fmt: skip
def test_storage_is_chosen_like_a_functions_app(
    state_store: dict[str, str], web_jobs: dict[str, str], location: str
) -> None:
    settings = Settings.model_validate(
        {"statestore": {"type": "table", **state_store}, "azurewebjobsstorage": web_jobs}
    )
    store = build_state_store(settings, registry=CollectorRegistry())
    assert isinstance(store, TableStateStore)
    assert store.location == location


@pytest.mark.parametrize(
    ("state_store", "key"),
    [
        ({"type": "table"}, "StateStore:Type"),
        ({"type": "table", "connectionstring": "AccountKey=c2VjcmV0;junk"}, "StateStore:ConnectionString"),
        ({"type": "table", "connectionstring": "UseDevelopmentStorage=true", "tablename": "no-dash"},
         "StateStore:TableName"),
    ],
)  # fmt: skip
def test_bad_storage_configuration_fails_at_start_naming_the_key(state_store: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        build_state_store(Settings.model_validate({"statestore": state_store}), registry=CollectorRegistry())
    assert caught.value.key == key
    assert "c2VjcmV0" not in caught.value.detail


async def start_simulators() -> dict[str, SimulatorServer]:
    sims = {}
    for name in ("AlphaOpenAI", "BetaOpenAI"):
        config = SimulatorConfig(
            name=name, api_key=f"sim-key-{name}", seed=1, zero_latency=True,
            deployments=(DeploymentConfig(name="gpt-35-turbo-16k", model="gpt-35-turbo-16k"),),
        )  # fmt: skip
        sims[name] = await run_simulator(config, host="127.0.0.1", port=0)
    return sims


def gateway_settings(sims: dict[str, SimulatorServer], connection_string: str) -> Settings:
    environ = {"AzureWebJobsStorage": connection_string, "StateStore__Type": "table",
               "StateStore__TableName": "gateway", "StateStore__TimeoutMs": "250"}  # fmt: skip
    for name, sim in sims.items():
        prefix = f"AzureOpenAI__Services__{name}__"
        environ |= {prefix + "Endpoint": sim.url, prefix + "ApiKey": f"sim-key-{name}",
                    prefix + "Deployment": "gpt-35-turbo-16k", prefix + "MaxRetries": "0"}  # fmt: skip
    return load_settings(environ=environ)


async def test_gateway_serves_every_chat_through_a_storage_outage(private_azurite: Azurite) -> None:
    sims = await start_simulators()
    settings = gateway_settings(sims, private_azurite.connection_string)
    registry = CollectorRegistry()
    store = build_state_store(settings, registry=registry, probe_interval_seconds=0.2)
    gateway = build_gateway(settings, registry=registry, state_store=store)
    served: dict[str, Counter[str]] = {}
    failed: list[str] = []

    async def chats(phase: str, count: int) -> None:
        async def one() -> None:
            try:
                completion = await gateway.chat("tailspin", (ChatMessage("user", "Say hello"),))
            except GatewayError as exc:
                failed.append(f"{phase}: {exc.detail}")
            else:
                served.setdefault(phase, Counter())[completion.instance] += 1

        await asyncio.gather(*(one() for _ in range(count)))

    try:
        await gateway.start()
        await chats("before", 40)
        private_azurite.stop()
        await chats("outage", 40)
        shared_during_outage = registry.get_sample_value("gateway_state_store_shared")
        private_azurite.start()
        for _ in range(100):  # bounded: the store probes the table again after 0.2 s
            await asyncio.sleep(0.05)
            await chats("recovery", 2)
            if registry.get_sample_value("gateway_state_store_shared") == 1:
                break
        await chats("after", 40)
    finally:
        await gateway.aclose()
        for sim in sims.values():
            await sim.stop()
    assert failed == []
    assert shared_during_outage == 0
    assert fallbacks(registry, "error") + fallbacks(registry, "timeout") >= 40
    assert registry.get_sample_value("gateway_state_store_shared") == 1
    for phase in ("before", "outage", "after"):  # round-robin over both instances in every phase
        assert served[phase] == {"AlphaOpenAI": 20, "BetaOpenAI": 20}, phase
