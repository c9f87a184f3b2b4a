"""Token quotas per UTC day and month (``Limits:...:{TokensPerDay, TokensPerMonth}``), shared by replicas.

The same estimate-then-settle rule as the per-window limits, on calendar periods: a request holds
its estimate against the tenant's day and month, and gives back what it did not use when it ends.

Across replicas the quota is *reserved* in the budget store (one row per tenant, the reserved
tokens of the current day and month): a replica reserves a chunk (``1 %`` of the quota, at least
the request's estimate) with one atomic change, admits from it locally, and reserves again when
it runs out. The store never grants more than the quota, so what all replicas admit together is
at most the quota, plus whatever real usage exceeded estimates (booked as debt on the next
reservation). Chunks still held by other replicas are what a tenant may find refused early: at
most ``replicas x 1 %`` of the quota. A refusal is a 429 whose ``Retry-After`` runs to the period's
reset (00:00 UTC, the 1st of the month) and whose message names the quota.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from .._errors import RateLimited
from ._port import BudgetStore, Row, StoreUnavailable, Tally

Period = Literal["day", "month"]
CHUNK_SHARE = 100  # a reservation is 1/100 of the quota (or the request's estimate when larger)


@dataclass(frozen=True, slots=True)
class Quota:
    """``TokensPerDay`` / ``TokensPerMonth`` of one tenant; 0 = none."""

    per_day: int = 0
    per_month: int = 0

    def of(self, period: Period) -> int:
        return self.per_day if period == "day" else self.per_month


@dataclass(slots=True)
class _Held:
    period_index: int = -1
    chunk: int = 0  # reserved in the store, not yet admitted here (negative: owed to the store)
    reserved: int = 0  # the store's total for the period at the last exchange (every replica)


@dataclass(slots=True)
class QuotaTicket:
    tenant: str
    holds: dict[Period, tuple[int, int]] = field(default_factory=dict)  # period -> (index, tokens)
    done: bool = False


class QuotaMetrics:
    """Hook for ``gateway_quota_used_ratio{tenant_name,period}`` and refusals (set by the builder)."""

    def __init__(self, used: Callable[[str, Period, float], None], refused: Callable[[str, str], None]) -> None:
        self.used = used
        self.refused = refused


class QuotaKeeper:
    def __init__(
        self,
        quotas: Mapping[str, Quota],
        default: Quota,
        store: BudgetStore,
        *,
        metrics: QuotaMetrics | None = None,
        on_store_failure: Literal["allow", "deny"] = "allow",
        timeout_seconds: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._quotas = dict(quotas)
        self._default = default
        self._store = store
        self._metrics = metrics
        self._on_failure = on_store_failure
        self._timeout = timeout_seconds
        self._clock = clock
        self._held: dict[tuple[str, Period], _Held] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def quota(self, tenant: str) -> Quota:
        return self._quotas.get(tenant, self._default)

    def applies(self, tenant: str) -> bool:
        q = self.quota(tenant)
        return q.per_day > 0 or q.per_month > 0

    async def admit(self, tenant: str, tokens: int) -> QuotaTicket | None:
        """Hold ``tokens`` against the tenant's day and month quotas, or raise :class:`RateLimited`."""
        quota = self.quota(tenant)
        periods: list[Period] = [p for p in ("day", "month") if quota.of(p) > 0]
        if not periods:
            return None
        ticket = QuotaTicket(tenant)
        lock = self._locks.setdefault(tenant, asyncio.Lock())
        async with lock:
            for period in periods:
                index = _index(period, self._clock())
                held = self._state(tenant, period, index)
                if held.chunk < tokens:
                    await self._reserve(tenant, period, index, held, tokens, quota.of(period))
                if held.chunk < tokens:
                    self.release(ticket)
                    if self._metrics is not None:
                        self._metrics.refused(tenant, f"tokens_per_{period}")
                    raise _refusal(tenant, period, quota.of(period), self._clock())
                held.chunk -= tokens
                ticket.holds[period] = (index, tokens)
        return ticket

    def settle(self, ticket: QuotaTicket | None, used: int) -> None:
        """The request used ``used`` tokens: give back the rest of its estimate (or owe the excess)."""
        if ticket is None or ticket.done:
            return
        ticket.done = True
        for period, (index, held_tokens) in ticket.holds.items():
            held = self._held.get((ticket.tenant, period))
            if held is not None and held.period_index == index:
                held.chunk += held_tokens - used

    def release(self, ticket: QuotaTicket | None) -> None:
        self.settle(ticket, 0)

    def _state(self, tenant: str, period: Period, index: int) -> _Held:
        held = self._held.get((tenant, period))
        if held is None or held.period_index != index:
            held = self._held[(tenant, period)] = _Held(index)
        return held

    async def _reserve(self, tenant: str, period: Period, index: int, held: _Held, tokens: int, limit: int) -> None:
        want = max(tokens - held.chunk, math.ceil(limit / CHUNK_SHARE))
        debt = max(0, -held.chunk)
        key = f"quota|{tenant}"
        slot = _slot(period, index)

        def change(row: Row) -> tuple[Row, tuple[int, int]]:
            reserved = row.get(slot, Tally()).tokens + debt
            granted = max(0, min(want, limit - reserved))
            # Keep the other period kind's slots; of this kind, only the current and the previous one.
            kept = {k: v for k, v in row.items() if (k >= _MONTHS) != (slot >= _MONTHS) or k >= slot - 1}
            return {**kept, slot: Tally(reserved + granted)}, (granted, reserved + granted)

        try:
            granted, reserved = await asyncio.wait_for(self._store.update(key, change), self._timeout * 4)
        except (StoreUnavailable, TimeoutError):
            if self._on_failure == "deny":
                return
            granted, reserved = want, held.reserved  # allow: this replica admits on its own meanwhile
        held.chunk += debt + granted
        held.reserved = reserved
        if self._metrics is not None:
            self._metrics.used(tenant, period, reserved / limit)


_MONTHS = 10_000_000  # month slots sit above day slots in the tenant's row


def _index(period: Period, now: float) -> int:
    moment = datetime.fromtimestamp(now, UTC)
    return moment.toordinal() if period == "day" else moment.year * 12 + moment.month - 1


def _slot(period: Period, index: int) -> int:
    return index if period == "day" else _MONTHS + index


def reset_at(period: Period, now: float) -> datetime:
    """When the current UTC day or month ends."""
    moment = datetime.fromtimestamp(now, UTC)
    if period == "day":
        return datetime(moment.year, moment.month, moment.day, tzinfo=UTC) + timedelta(days=1)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def _refusal(tenant: str, period: Period, limit: int, now: float) -> RateLimited:
    resets = reset_at(period, now)
    key = "TokensPerDay" if period == "day" else "TokensPerMonth"
    when = "00:00 UTC" if period == "day" else f"{resets:%Y-%m-%d} 00:00 UTC"
    return RateLimited(
        f"tenant '{tenant}' has used its token quota of {limit:,} per UTC {period} "
        f"(Limits:Tenants:{tenant}:{key}, or Limits:Default:{key}); it resets at {when}",
        max(1.0, resets.timestamp() - now),
    )
