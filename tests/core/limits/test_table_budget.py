"""The Table budget store against a real Azurite: ETag concurrency across real processes, the
stored row, and failures translated to StoreUnavailable."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables.aio import TableClient

from core.limits import Exchange, SlidingWindow, StoreUnavailable, Tally
from core.limits._table import ROW_KEY, TableBudgetStore
from core.state import TableLocation
from core.state._table import open_table

WORKER = Path(__file__).with_name("budget_worker.py")
WINDOW = SlidingWindow(10, 10)


def store_for(connection_string: str, table: str) -> TableBudgetStore:
    client, credential = open_table(TableLocation(table, connection_string=connection_string))
    return TableBudgetStore(client, credential=credential)


def take(bucket: int, amount: int, budget: int = 1000, returns: dict[int, Tally] | None = None) -> Exchange:
    return Exchange(WINDOW, Tally(budget, 0), bucket, Tally(amount, 0), Tally(amount, 0), returns or {})


async def test_grants_persist_in_one_row_per_tenant_and_age_out(azurite: Any) -> None:
    store = store_for(azurite.connection_string, "limitsrow")
    try:
        assert (await store.update("acme", take(100, 600))).granted == Tally(600, 0)
        refused = await store.update("acme", take(105, 500))
        assert refused.refused == "tokens" and refused.retry_bucket == 111
        again = store_for(azurite.connection_string, "limitsrow")  # another replica: reads the row
        try:
            assert (await again.update("acme", take(105, 400))).granted == Tally(400, 0)
            back = await again.update("acme", take(106, 300, returns={105: Tally(300, 0)}))
            assert back.granted == Tally(300, 0)  # what it gave back made room for it
        finally:
            await again.aclose()
        async with TableClient.from_connection_string(azurite.connection_string, "limitsrow") as client:
            entity = await client.get_entity("acme", ROW_KEY)
        assert json.loads(entity["Buckets"]) == [[100, 600, 0], [105, 100, 0], [106, 300, 0]]
        assert (await store.update("acme", take(117, 1000))).granted == Tally(1000, 0)  # old buckets gone
    finally:
        await store.aclose()


def test_replicas_in_separate_processes_never_share_out_more_than_the_budget(azurite: Any) -> None:
    """Four OS processes x 4 callers race on one tenant's row: the grants add up to the budget exactly."""
    job = {"connection_string": azurite.connection_string, "table": "limitsrace", "tenant": "flood",
           "bucket": 5000, "budget": 1500, "step": 25}  # fmt: skip
    procs = [subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]  # fmt: skip
    try:
        for proc in procs:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "ready"
        start = time.time() + 1.0  # one instant for all: a busy machine may read the go's far apart
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"go {start}\n")
            proc.stdin.flush()
        results = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert sum(r["granted"] for r in results) == 1500
    assert sum(1 for r in results if r["granted"]) >= 2  # they really raced


async def test_an_unreachable_store_is_store_unavailable(private_azurite: Any) -> None:
    store = store_for(private_azurite.connection_string, "limitsdown")
    try:
        await store.update("acme", take(1, 10))
        private_azurite.stop()
        with pytest.raises(StoreUnavailable) as failed:
            await asyncio.wait_for(store.update("acme", take(1, 10)), 30)
        assert failed.value.reason == "error" and "Eby8" not in failed.value.detail
    finally:
        await store.aclose()
