"""The ledger: every finished request added to its hour's row in memory, flushed in batches.

``record`` is the hot path: one dict update, no I/O. Every ``Ledger:FlushSeconds`` the rows that
changed are written to the store with their cumulative counts (idempotent: see ``_rows``). A
failed flush keeps them dirty and the next flush writes them again; ``aclose`` (SIGTERM, host
shutdown) flushes once more. What a SIGKILL can lose is bounded by one flush interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge

from .._values import Usage
from ._port import LedgerStore, LedgerUnavailable
from ._rows import Counts, GroupBy, LedgerKey, LedgerRow, UsageLine, hour_of, in_range, summarise

log = logging.getLogger("core.ledger")
_KEEP = timedelta(hours=2)  # flushed rows older than this leave memory (late requests still land)


@dataclass(frozen=True, slots=True)
class Price:
    """``Pricing:<model>:{PromptPer1K, CompletionPer1K}`` in the deployment's currency."""

    prompt_per_1k: float = 0.0
    completion_per_1k: float = 0.0

    def cost(self, usage: Usage) -> float:
        return usage.prompt_tokens / 1000 * self.prompt_per_1k + usage.completion_tokens / 1000 * self.completion_per_1k


class _Row:
    __slots__ = ("completion", "cost", "counted", "prompt", "reported", "requests", "version")

    def __init__(self) -> None:
        self.requests = self.prompt = self.completion = self.reported = self.counted = self.version = 0
        self.cost = 0.0

    def counts(self) -> Counts:
        return Counts(self.requests, self.prompt, self.completion, self.reported, self.counted, round(self.cost, 9))


class Ledger:
    def __init__(
        self,
        store: LedgerStore,
        *,
        writer: str,
        flush_seconds: float,
        prices: Mapping[str, Price],
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._writer = writer
        self._interval = flush_seconds
        self._prices = {model.lower(): price for model, price in prices.items()}
        self._clock = clock
        self._rows: dict[tuple[str, datetime, str, str], _Row] = {}
        self._hour = datetime.fromtimestamp(0, UTC)  # the current hour, and when it starts (see record)
        self._hour_starts = float("inf")
        self._dirty: set[tuple[str, datetime, str, str]] = set()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._failed_in_a_row = 0
        self._flushes = Counter("gateway_ledger_flushes", "Ledger flushes, by result (ok, failed).",
                                ("result",), registry=registry)
        self._pending = Gauge("gateway_ledger_pending_rows", "Ledger rows changed since the last good flush.",
                              registry=registry)
        self._last = Gauge("gateway_ledger_last_flush_timestamp_seconds",
                           "Unix time of the last ledger flush the store accepted (0: none yet).", registry=registry)
        self._cost = Counter("gateway_token_cost", "Cost of the tokens used, from the Pricing table.",
                             ("tenant_name", "openai_name"), registry=registry)
        self._pending.set_function(lambda: len(self._dirty))

    @property
    def writer(self) -> str:
        return self._writer

    def record(self, tenant: str, instance: str, deployment: str, model: str, usage: Usage, reported: bool) -> None:
        """Add one finished request (hot path: no I/O)."""
        now = self._clock()
        if not self._hour_starts <= now < self._hour_starts + 3600:  # a new hour (or the clock went back)
            self._hour = hour_of(datetime.fromtimestamp(now, UTC))
            self._hour_starts = self._hour.timestamp()
        hour = self._hour
        key = (tenant, hour, instance, deployment)
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = _Row()
        row.requests += 1
        row.prompt += usage.prompt_tokens
        row.completion += usage.completion_tokens
        if reported:
            row.reported += usage.total_tokens
        else:
            row.counted += usage.total_tokens
        price = self._prices.get(model.lower())
        if price is not None:
            cost = price.cost(usage)
            row.cost += cost
            self._cost.labels(tenant, instance.lower()).inc(cost)
        row.version += 1
        self._dirty.add(key)

    async def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger-flush")

    async def flush(self) -> bool:
        """Write every changed row; True when the store took them all (or nothing had changed)."""
        async with self._lock:
            return await self._flush()

    async def usage(self, tenant: str | None, start: datetime, end: datetime, group_by: GroupBy) -> list[UsageLine]:
        """Every writer's rows from the store, with this process's unflushed counts on top."""
        stored = {row.key: row for row in await self._store.read(tenant, start, end)}
        for (row_tenant, hour, instance, deployment), row in list(self._rows.items()):
            if (tenant is None or row_tenant == tenant) and in_range(hour, start, end):
                key = LedgerKey(row_tenant, hour, instance, deployment, self._writer)
                stored[key] = LedgerRow(key, row.counts())
        return summarise(stored.values(), group_by)

    async def aclose(self) -> None:
        """Stop the interval and flush what is left (one attempt), then close the store."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if not await self.flush() and self._dirty:
            log.error("ledger: %d rows could not be written at shutdown; they are lost", len(self._dirty))
        await self._store.aclose()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def _flush(self) -> bool:
        if not self._dirty:
            self._forget_old()
            return True
        taken = {key: self._rows[key].version for key in self._dirty}
        rows = [LedgerRow(LedgerKey(*key, self._writer), self._rows[key].counts()) for key in taken]
        try:
            await self._store.write(rows)
        except LedgerUnavailable as exc:
            self._flushes.labels("failed").inc()
            self._failed_in_a_row += 1
            log.warning("ledger flush of %d rows failed (%s, %d in a row): %s; they stay queued",
                        len(rows), exc.reason, self._failed_in_a_row, exc.detail)
            return False
        for key, version in taken.items():
            if self._rows[key].version == version:
                self._dirty.discard(key)
        if self._failed_in_a_row:
            log.info("ledger flushes succeed again after %d failures", self._failed_in_a_row)
        self._failed_in_a_row = 0
        self._flushes.labels("ok").inc()
        self._last.set(self._clock())
        self._forget_old()
        return True

    def _forget_old(self) -> None:
        oldest = hour_of(datetime.fromtimestamp(self._clock(), UTC)) - _KEEP
        for key in [k for k in self._rows if k[1] < oldest and k not in self._dirty]:
            del self._rows[key]
