"""Daily and monthly token quotas through the budget store seam: memory, a failing store, Azurite."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from core import RateLimited
from core.limits import MemoryBudgetStore, Row, StoreUnavailable
from core.limits._quota import Quota, QuotaKeeper, reset_at

T = TypeVar("T")
NOON = datetime(2026, 12, 31, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class DownStore(MemoryBudgetStore):
    async def update(self, key: str, change: Callable[[Row], tuple[Row, T]]) -> T:
        raise StoreUnavailable("error", "down")


def _keeper(store: Any, clock: Clock, **kwargs: Any) -> QuotaKeeper:
    return QuotaKeeper({"contoso": Quota(per_day=1000, per_month=5000)}, Quota(), store, clock=clock, **kwargs)


async def test_a_daily_quota_refuses_once_used_and_names_itself() -> None:
    clock = Clock()
    keeper = _keeper(MemoryBudgetStore(), clock)
    for _ in range(4):
        keeper.settle(await keeper.admit("contoso", 250), 250)
    with pytest.raises(RateLimited) as refused:
        await keeper.admit("contoso", 10)
    assert "TokensPerDay" in refused.value.detail and "00:00 UTC" in refused.value.detail
    assert refused.value.retry_after == pytest.approx(12 * 3600)  # until midnight UTC
    assert await keeper.admit("fabrikam", 10**9) is None  # no quota for tenants without one


async def test_unused_estimates_come_back_and_overruns_are_owed() -> None:
    keeper = _keeper(MemoryBudgetStore(), Clock())
    keeper.settle(await keeper.admit("contoso", 900), 100)  # estimated 900, used 100
    keeper.settle(await keeper.admit("contoso", 800), 800)
    with pytest.raises(RateLimited):
        await keeper.admit("contoso", 200)  # 100 + 800 used: 100 left
    keeper.release(await keeper.admit("contoso", 100))  # failed upstream: nothing used
    keeper.settle(await keeper.admit("contoso", 50), 150)  # used more than estimated
    with pytest.raises(RateLimited):
        await keeper.admit("contoso", 1)


async def test_replicas_share_the_quota_through_the_store() -> None:
    store, clock = MemoryBudgetStore(), Clock()
    replicas = [_keeper(store, clock) for _ in range(3)]
    admitted = 0
    for turn in range(100):
        try:
            ticket = await replicas[turn % 3].admit("contoso", 40)
        except RateLimited:
            continue
        replicas[turn % 3].settle(ticket, 40)
        admitted += 40
    # Never over the quota; at most the chunks the other replicas still hold (1 % each) short of it.
    assert 1000 - 2 * 40 <= admitted <= 1000


async def test_the_day_resets_at_midnight_utc_and_the_month_still_counts() -> None:
    clock = Clock()
    keeper = _keeper(MemoryBudgetStore(), clock)
    refused_days = []
    for day in range(6):
        clock.now = NOON - 25 * 86400 + day * 86400  # six days of December
        for _ in range(4):
            try:
                keeper.settle(await keeper.admit("contoso", 250), 250)
            except RateLimited as exc:
                assert "TokensPerMonth" in exc.detail
                refused_days.append(day)
    assert refused_days == [5, 5, 5, 5]  # 1,000 a day fits the day, and five days fill the month
    assert reset_at("month", NOON) == datetime(2027, 1, 1, tzinfo=UTC)


async def test_store_failure_follows_on_store_failure() -> None:
    allow = _keeper(DownStore(), Clock(), on_store_failure="allow")
    assert await allow.admit("contoso", 100) is not None
    deny = _keeper(DownStore(), Clock(), on_store_failure="deny")
    with pytest.raises(RateLimited):
        await deny.admit("contoso", 100)


async def test_the_quota_is_shared_through_table_storage(azurite: Any) -> None:
    from core._build import table_location
    from core.config import validate_settings
    from core.limits._table import TableBudgetStore
    from core.state._table import open_table

    settings = validate_settings({"StateStore": {"Type": "table", "ConnectionString": azurite.connection_string,
                                                 "TableName": "quotatest"}})
    stores = []
    for _ in range(2):
        client, credential = open_table(table_location(settings, "quotatest"))
        stores.append(TableBudgetStore(client, credential=credential))
    clock = Clock()
    one, two = (_keeper(store, clock, timeout_seconds=2.0) for store in stores)
    try:
        used = 0
        for turn in range(40):
            keeper = one if turn % 2 else two
            try:
                keeper.settle(await keeper.admit("contoso", 100), 100)
                used += 100
            except RateLimited:
                pass
        assert 1000 - 100 <= used <= 1000
    finally:
        for store in stores:
            await store.aclose()
