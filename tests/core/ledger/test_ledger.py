"""The ledger's book through its store seam: a memory store, a flaky store, and real Azurite."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from core import Usage
from core._build import table_location
from core.config import validate_settings
from core.ledger import Counts, Ledger, LedgerKey, LedgerRow, LedgerUnavailable, MemoryLedgerStore, Price
from core.ledger._table import TableLedgerStore
from core.state._table import open_table

T0 = datetime(2026, 12, 1, 9, 59, 50, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


class FlakyStore(MemoryLedgerStore):
    """Fails the next ``failures`` writes; with ``lose_answer`` the write lands but the caller sees a failure
    (a timeout after the batch committed), which is what makes idempotent rows necessary."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0
        self.lose_answer = False
        self.writes = 0

    async def write(self, rows: Sequence[LedgerRow]) -> None:
        self.writes += 1
        if self.failures:
            self.failures -= 1
            if self.lose_answer:
                await super().write(rows)
            raise LedgerUnavailable("timeout", "no answer")
        await super().write(rows)


def _ledger(store: Any, clock: Clock, registry: CollectorRegistry | None = None, **prices: Price) -> Ledger:
    return Ledger(store, writer="w1", flush_seconds=10, prices=prices, registry=registry or CollectorRegistry(),
                  clock=clock)


async def _totals(ledger: Ledger, tenant: str | None = None) -> dict[str, int]:
    lines = await ledger.usage(tenant, T0 - timedelta(days=1), T0 + timedelta(days=1), "day")
    out: dict[str, int] = {}
    for line in lines:
        out[line.tenant] = out.get(line.tenant, 0) + line.counts.total_tokens
    return out


async def test_rows_per_tenant_instance_deployment_and_hour() -> None:
    clock, store = Clock(), MemoryLedgerStore()
    ledger = _ledger(store, clock)
    ledger.record("contoso", "Alpha", "gpt-4o", "gpt-4o", Usage(10, 5), True)
    ledger.record("contoso", "Alpha", "gpt-4o", "gpt-4o", Usage(1, 1), False)
    clock.now += 20  # 10:00:10, the next hour
    ledger.record("contoso", "Alpha", "gpt-4o", "gpt-4o", Usage(2, 2), True)
    ledger.record("fabrikam", "Beta", "gpt-4o", "gpt-4o", Usage(3, 3), True)
    assert await ledger.flush()
    lines = await ledger.usage("contoso", T0 - timedelta(hours=1), T0 + timedelta(hours=2), "hour")
    assert [(line.period.hour, line.counts) for line in lines] == [
        (9, Counts(requests=2, prompt_tokens=11, completion_tokens=6, reported_tokens=15, counted_tokens=2)),
        (10, Counts(requests=1, prompt_tokens=2, completion_tokens=2, reported_tokens=4)),
    ]
    assert await _totals(ledger) == {"contoso": 21, "fabrikam": 6}


async def test_unflushed_counts_are_already_in_the_answer() -> None:
    ledger = _ledger(MemoryLedgerStore(), Clock())
    ledger.record("contoso", "Alpha", "d", "m", Usage(7, 3), True)
    assert await _totals(ledger) == {"contoso": 10}


async def test_a_failed_flush_is_retried_and_counts_once_even_when_the_write_had_landed() -> None:
    clock, store = Clock(), FlakyStore()
    registry = CollectorRegistry()
    ledger = _ledger(store, clock, registry)
    ledger.record("contoso", "Alpha", "d", "m", Usage(10, 10), True)
    store.failures, store.lose_answer = 1, True
    assert not await ledger.flush()
    assert registry.get_sample_value("gateway_ledger_pending_rows") == 1
    ledger.record("contoso", "Alpha", "d", "m", Usage(1, 1), True)
    assert await ledger.flush()
    assert registry.get_sample_value("gateway_ledger_pending_rows") == 0
    other_reader = _ledger(store, clock)  # a second process reading the store: no unflushed rows of its own
    assert await _totals(other_reader) == {"contoso": 22}
    assert registry.get_sample_value("gateway_ledger_flushes_total", {"result": "failed"}) == 1
    assert registry.get_sample_value("gateway_ledger_flushes_total", {"result": "ok"}) == 1


async def test_writers_add_up_and_rewriting_a_row_does_not() -> None:
    clock, store = Clock(), MemoryLedgerStore()
    one = Ledger(store, writer="a", flush_seconds=10, prices={}, registry=CollectorRegistry(), clock=clock)
    two = Ledger(store, writer="b", flush_seconds=10, prices={}, registry=CollectorRegistry(), clock=clock)
    one.record("contoso", "Alpha", "d", "m", Usage(5, 5), True)
    two.record("contoso", "Alpha", "d", "m", Usage(1, 2), True)
    for _ in range(3):
        one._dirty.add(next(iter(one._rows)))  # force rewriting the same cumulative row
        assert await one.flush()
    assert await two.flush()
    reader = Ledger(store, writer="r", flush_seconds=10, prices={}, registry=CollectorRegistry(), clock=clock)
    assert await _totals(reader) == {"contoso": 13}


async def test_cost_from_the_pricing_table() -> None:
    registry = CollectorRegistry()
    ledger = _ledger(MemoryLedgerStore(), Clock(), registry, **{"GPT-4o": Price(2.5, 10.0)})
    ledger.record("contoso", "Alpha", "d", "gpt-4o", Usage(1000, 500), True)
    ledger.record("contoso", "Alpha", "d", "unpriced-model", Usage(1000, 500), True)
    (line,) = await ledger.usage("contoso", T0 - timedelta(hours=1), T0 + timedelta(hours=1), "day")
    assert line.counts.cost == pytest.approx(7.5)
    assert registry.get_sample_value(
        "gateway_token_cost_total", {"tenant_name": "contoso", "openai_name": "alpha"}
    ) == pytest.approx(7.5)


async def test_shutdown_flushes_what_is_left() -> None:
    store = MemoryLedgerStore()
    ledger = _ledger(store, Clock())
    await ledger.start()
    ledger.record("contoso", "Alpha", "d", "m", Usage(4, 4), True)
    await ledger.aclose()
    assert [row.counts.total_tokens for row in await store.read(None, T0 - timedelta(days=1), T0)] == [8]


async def test_table_store_round_trip_batches_and_idempotent_rewrites(azurite: Any) -> None:
    settings = validate_settings({"StateStore": {"Type": "table", "ConnectionString": azurite.connection_string}})
    client, credential = open_table(table_location(settings, "ledgertest", "Ledger:TableName"))
    store = TableLedgerStore(client, credential=credential)
    hour = datetime(2026, 12, 1, 9, tzinfo=UTC)
    rows = [LedgerRow(LedgerKey("contoso", hour, f"inst/{i}", "gpt#4", "w1"), Counts(1, i, 1, i + 1, 0, 0.25))
            for i in range(150)]  # more than one transaction of one partition; key characters Table forbids
    rows.append(LedgerRow(LedgerKey("fabrikam", hour + timedelta(days=1), "Beta", "d", "w1"), Counts(2, 3, 4, 7)))
    try:
        await store.write(rows)
        await store.write(rows)  # a retried flush: same rows, same values
        contoso = await store.read("contoso", hour, hour + timedelta(hours=1))
        assert sorted(contoso, key=lambda r: r.key) == sorted(rows[:150], key=lambda r: r.key)
        everyone = await store.read(None, hour, hour + timedelta(days=2))
        assert len(everyone) == 151
        assert sum(r.counts.total_tokens for r in everyone) == sum(r.counts.total_tokens for r in rows)
        assert await store.read("contoso", hour + timedelta(days=3), hour + timedelta(days=4)) == []
    finally:
        await store.aclose()


async def test_table_store_down_is_a_ledger_error_not_a_crash(storage_connection_string: Any) -> None:
    from localrun.ports import free_port

    settings = validate_settings({"StateStore": {"Type": "table",
                                                 "ConnectionString": storage_connection_string(free_port())}})
    client, credential = open_table(table_location(settings, "ledgertest", "Ledger:TableName"))
    store = TableLedgerStore(client, credential=credential, timeout_seconds=2)
    try:
        with pytest.raises(LedgerUnavailable):
            await store.write([LedgerRow(LedgerKey("t", T0, "i", "d", "w"), Counts(1, 1, 1, 2))])
    finally:
        await store.aclose()
