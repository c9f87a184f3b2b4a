"""The limits algorithm and the replica hot path, with a fake clock and in-memory stores.

Several :class:`Limiter` objects sharing one store stand for several replicas sharing Table storage
(the Table adapter itself is tested against Azurite in test_table_budget.py).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from core import InvalidRequest, RateLimited
from core.limits import (
    Exchange,
    Limit,
    Limiter,
    LimitPolicy,
    MemoryBudgetStore,
    Row,
    SlidingWindow,
    StoreUnavailable,
    Tally,
    TenantLimits,
)
from core.telemetry import RateLimitMetrics

WINDOW = 10


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def policy(tokens: int = 1000, requests: int = 0, window: int = WINDOW) -> LimitPolicy:
    """``tokens`` / ``requests`` are per window (0 = unlimited); tenant 'free' has no limits."""
    limits = TenantLimits(Limit(tokens, window) if tokens else None, Limit(requests, window) if requests else None)
    return LimitPolicy({"acme": limits, "free": TenantLimits()}, limits, window)


def limiter(clock: Clock, store: object | None = None, registry: CollectorRegistry | None = None,
            **kw: object) -> Limiter:
    reg = registry or CollectorRegistry()
    return Limiter(kw.pop("policy", None) or policy(), store or MemoryBudgetStore(),  # type: ignore[arg-type]
                   metrics=RateLimitMetrics(reg, lambda t: t), clock=clock, **kw)  # type: ignore[arg-type]


def test_a_limit_is_per_minute_scaled_to_the_window():
    assert Limit.per_minute(6000, 10) == Limit(1000, 10)
    assert Limit.per_minute(6000, 60) == Limit(6000, 60)
    assert Limit.per_minute(0, 60) is None


def test_a_burst_at_a_bucket_boundary_is_not_a_second_budget():
    """The fixed-window failure: B just before a boundary, B again just after. Refused here."""
    clock = Clock(1_000_009.9)  # 0.1 s before a window boundary
    lim = limiter(clock)

    async def run() -> None:
        await lim.admit("acme", 1000)
        clock.now += 0.2  # a fixed 10 s window would start afresh now
        with pytest.raises(RateLimited) as refused:
            await lim.admit("acme", 500)
        assert 9 <= refused.value.retry_after <= 12  # the first 1000 must leave the window first
        clock.now += refused.value.retry_after
        await lim.admit("acme", 500)  # Retry-After is honest: the same request fits then

    asyncio.run(run())


def test_retry_after_is_whole_seconds_and_the_request_fits_then():
    clock = Clock()
    lim = limiter(clock)

    async def run() -> None:
        for _ in range(4):
            await lim.admit("acme", 200)
            clock.now += 1.3
        with pytest.raises(RateLimited) as refused:
            await lim.admit("acme", 400)
        wait = refused.value.retry_after
        assert wait == int(wait) and wait >= 1
        assert refused.value.budget is not None and refused.value.budget.limit_tokens == 1000
        clock.now += wait - 1
        with pytest.raises(RateLimited):
            await lim.admit("acme", 400)
        clock.now += 1
        await lim.admit("acme", 400)

    asyncio.run(run())


def test_settling_gives_back_what_the_request_did_not_use():
    clock = Clock()
    lim = limiter(clock)

    async def run() -> None:
        first = await lim.admit("acme", 900)
        with pytest.raises(RateLimited):
            await lim.admit("acme", 900)
        lim.settle(first, 100)  # used 100 of the 900 it held
        await lim.admit("acme", 800)
        budget = lim.budget("acme")
        assert budget is not None and budget.remaining_tokens == 100

    asyncio.run(run())


def test_a_failed_request_releases_its_tokens_but_counts_as_a_request():
    clock = Clock()
    lim = limiter(clock, policy=policy(tokens=1000, requests=2))

    async def run() -> None:
        ticket = await lim.admit("acme", 1000)
        lim.release(ticket)
        lim.release(ticket)  # once only
        await lim.admit("acme", 500)
        with pytest.raises(RateLimited) as refused:
            await lim.admit("acme", 1)
        assert "2 requests" in refused.value.detail
        budget = lim.budget("acme")
        assert budget is not None and budget.remaining_requests == 0 and budget.limit_requests == 2

    asyncio.run(run())


def test_tenants_without_limits_are_not_counted_and_too_large_requests_are_400():
    clock = Clock()
    lim = limiter(clock)

    async def run() -> None:
        assert await lim.admit("free", 10**9) is None
        assert lim.budget("free") is None
        with pytest.raises(InvalidRequest, match="more than tenant 'acme' may use in 10 s"):
            await lim.admit("acme", 1001)

    asyncio.run(run())


def _max_in_any_window(events: list[tuple[float, int]], window: float) -> int:
    events.sort()
    best, total, start = 0, 0, 0
    for end, (t, amount) in enumerate(events):
        total += amount
        while events[start][0] <= t - window:
            total -= events[start][1]
            start += 1
        best = max(best, total)
        del end
    return best


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replicas_sharing_a_store_never_admit_more_than_the_budget_in_any_window(seed):
    """Four replicas, random arrivals and sizes, settle below the estimate: every window of W holds
    at most B of real usage, and a flooding tenant still gets most of its budget."""
    rng = random.Random(seed)
    clock = Clock()
    store = MemoryBudgetStore()
    replicas = [limiter(clock, store) for _ in range(4)]
    used: list[tuple[float, int]] = []
    start = clock.now

    async def run() -> None:
        open_tickets: list[tuple[float, Limiter, object, int]] = []
        for _ in range(6000):
            clock.now += rng.expovariate(60)  # ~60 attempts/s: far over the budget
            for due, lim, ticket, actual in [t for t in open_tickets if t[0] <= clock.now]:
                lim.settle(ticket, actual)  # type: ignore[arg-type]
                open_tickets.remove((due, lim, ticket, actual))
            lim = rng.choice(replicas)
            estimate = rng.randint(20, 150)
            try:
                ticket = await lim.admit("acme", estimate)
            except RateLimited:
                continue
            actual = rng.randint(estimate // 3, estimate)
            used.append((clock.now, actual))
            open_tickets.append((clock.now + rng.uniform(0.05, 3), lim, ticket, actual))
            if rng.random() < 0.02:
                await rng.choice(replicas).flush(force=True)

    asyncio.run(run())
    assert _max_in_any_window(list(used), WINDOW) <= 1000
    elapsed = clock.now - start
    admitted_per_window = sum(a for _, a in used) / (elapsed / WINDOW)
    assert admitted_per_window >= 0.7 * 1000, admitted_per_window


def test_exchange_checks_every_run_that_contains_the_bucket():
    window = SlidingWindow(10, 10)
    row: Row = {100: Tally(600, 0)}
    # bucket 110 shares the run 100..110 with bucket 100: only 400 left there
    _, grant = Exchange(window, Tally(1000, 0), 110, Tally(500, 0), Tally(500, 0))(row)
    assert grant.refused == "tokens" and grant.retry_bucket == 111
    new_row, grant = Exchange(window, Tally(1000, 0), 111, Tally(500, 0), Tally(900, 0))(row)
    assert grant.granted == Tally(900, 0) and 100 not in new_row  # bucket 100 aged out of every run


class FailingStore:
    def __init__(self) -> None:
        self.calls = 0

    async def update(self, key: str, change: Callable[[Row], tuple[Row, object]]) -> object:
        self.calls += 1
        raise StoreUnavailable("error", "Table storage unreachable (ServiceRequestError)")

    async def aclose(self) -> None:
        return None


def test_store_failure_allow_admits_against_this_replica_budget(caplog):
    clock = Clock()
    registry = CollectorRegistry()
    store = FailingStore()
    lim = limiter(clock, store, registry)

    async def run() -> None:
        for _ in range(10):
            await lim.admit("acme", 100)  # the replica alone still holds the tenant to B
        with pytest.raises(RateLimited):
            await lim.admit("acme", 100)

    asyncio.run(run())
    assert store.calls == 1  # the circuit stays open: no storage call per request
    assert registry.get_sample_value("gateway_rate_limit_store_failures_total", {"reason": "error"}) == 1
    assert registry.get_sample_value("gateway_rate_limit_store_shared") == 0
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "Limits:OnStoreFailure" in warnings[0].getMessage()


def test_store_failure_deny_refuses_limited_tenants_only():
    clock = Clock()
    registry = CollectorRegistry()
    lim = limiter(clock, FailingStore(), registry, on_store_failure="deny")

    async def run() -> None:
        with pytest.raises(RateLimited, match="OnStoreFailure is 'deny'") as refused:
            await lim.admit("acme", 100)
        assert refused.value.retry_after is not None and refused.value.retry_after >= 1
        assert await lim.admit("free", 100) is None

    asyncio.run(run())
    assert registry.get_sample_value("gateway_rate_limited_requests_total",
                                     {"tenant_name": "acme", "limit": "store"}) == 1


def test_a_busy_replica_talks_to_the_store_about_once_per_bucket():
    """The hot path: admissions come from the leased slice, not from a store round trip each."""
    clock = Clock()
    calls = 0
    inner = MemoryBudgetStore()

    class Counting:
        async def update(self, key: str, change: Callable[[Row], tuple[Row, object]]) -> object:
            nonlocal calls
            calls += 1
            return await inner.update(key, change)

        async def aclose(self) -> None:
            return None

    lim = limiter(clock, Counting(), policy=policy(tokens=1_000_000))

    async def run() -> int:
        admitted = 0
        for _ in range(2000):  # 200 requests per second for 10 s, 100 tokens each
            clock.now += 0.005
            lim.settle(await lim.admit("acme", 100), 100)
            admitted += 1
        return admitted

    assert asyncio.run(run()) == 2000
    assert calls <= 2 * 10 + 5, calls  # 10 buckets of 1 s in 10 s


def test_remaining_budget_and_refusals_are_metrics():
    clock = Clock()
    registry = CollectorRegistry()
    lim = limiter(clock, registry=registry)

    async def run() -> None:
        await lim.admit("acme", 600)
        assert lim.budget("acme") is not None
        with pytest.raises(RateLimited):
            await lim.admit("acme", 600)

    asyncio.run(run())
    assert registry.get_sample_value("gateway_rate_limit_remaining", {"tenant_name": "acme", "limit": "tokens"}) == 400
    assert registry.get_sample_value("gateway_rate_limited_requests_total",
                                     {"tenant_name": "acme", "limit": "tokens"}) == 1


def test_the_memory_store_keeps_a_bounded_number_of_tenants():
    store = MemoryBudgetStore(max_rows=2)
    grant = Exchange(SlidingWindow(10, 10), Tally(100, 0), 5, Tally(60, 0), Tally(60, 0))

    async def run() -> list[str | None]:
        for tenant in ("a", "b", "a", "c"):  # b is the least recently updated when c arrives
            await store.update(tenant, grant)
        return [(await store.update(t, grant)).refused for t in ("a", "c", "b")]

    assert asyncio.run(run()) == ["tokens", "tokens", None]  # a and c kept their grants; b was dropped
