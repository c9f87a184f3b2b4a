"""The hot path: admit a request from this replica's slice of its tenant's budget, settle it later.

Per tenant, a replica holds a slice granted by the store in the current bucket (``_window``).
Admitting from it is a few integer operations; the store is reached only when the slice runs
out or a new bucket starts (once per ``WindowSeconds / 10`` per busy tenant and replica), by one
caller while the others of that tenant wait for its answer. What is given back (an unused slice,
an estimate above the real usage) is owed to the bucket it came from and rides on the next
exchange, or on the background flush one bucket later.

When the shared store fails or is slower than its time budget, ``Limits:OnStoreFailure`` decides:
``allow`` admits against a budget kept in this replica's memory (each replica then holds the
tenant to B on its own), ``deny`` refuses limited tenants until the store answers again. Either
way ``gateway_rate_limit_store_failures_total{reason}`` counts it, ``gateway_rate_limit_store_shared``
drops to 0 and one WARNING a minute says so. The store is probed again every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .._errors import InvalidRequest, RateLimited
from .._values import Budget
from ._circuit import StoreCircuit
from ._memory import MemoryBudgetStore
from ._policy import LimitPolicy, TenantLimits
from ._port import BudgetStore, StoreUnavailable, Tally
from ._window import Exchange, Grant, SlidingWindow

log = logging.getLogger("core.limits")
ZERO = Tally()

SHARED, LOCAL = 0, 1  # where a slice came from: the configured store, or this replica's fallback


class LimitMetrics(Protocol):
    """What the limiter reports (``core._metrics.RateLimitMetrics`` on a registry)."""

    def refused(self, tenant: str, limit: str) -> None: ...

    def remaining(self, tenant: str, budget: Budget) -> None: ...

    def store_failed(self, reason: str) -> None: ...

    def store_shared(self, shared: bool) -> None: ...


@dataclass(slots=True)
class Ticket:
    """One admitted request's hold on its tenant's budget: settle or release it once."""

    tenant: str
    source: int
    bucket: int
    tokens: int
    done: bool = False


@dataclass(slots=True)
class _Tenant:
    """This replica's view of one tenant."""

    bucket: int = -(2**62)  # bucket of the slice
    source: int = SHARED
    slice: Tally = ZERO  # left in the slice
    room: Tally = ZERO  # headroom of the tenant's row after the last exchange (others' share)
    used: Tally = ZERO  # admitted from slices of ``bucket``
    used_before: Tally = ZERO  # ... in the previous bucket this replica served (sizes slices)
    owed: dict[tuple[int, int], Tally] = field(default_factory=dict)  # (source, bucket) -> give back
    waiting: Tally = ZERO  # needs of callers queued on the lock
    blocked_until: float = 0.0
    blocked_need: Tally = ZERO
    blocked_by: str = "tokens"
    synced_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Limiter:
    """Per-tenant token and request limits over a sliding window, shared through ``store``."""

    def __init__(
        self,
        policy: LimitPolicy,
        store: BudgetStore,
        *,
        metrics: LimitMetrics,
        on_store_failure: Literal["allow", "deny"] = "allow",
        timeout_seconds: float = 0.25,
        probe_interval_seconds: float = 2.0,
        buckets: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._policy = policy
        self._window = SlidingWindow(policy.window_seconds, buckets)
        self._stores: tuple[BudgetStore, BudgetStore] = (store, MemoryBudgetStore())
        self._metrics = metrics
        self._deny = on_store_failure == "deny"
        self._timeout = timeout_seconds
        self._clock = clock
        self._tenants: dict[str, _Tenant] = {}
        mode = "refusing limited tenants" if self._deny else "admitting against this replica's own budget"
        self._circuit = StoreCircuit(metrics, mode=mode, probe_interval_seconds=probe_interval_seconds, clock=clock)
        self._flusher: asyncio.Task[None] | None = None

    @property
    def window(self) -> SlidingWindow:
        return self._window

    def limits(self, tenant: str) -> TenantLimits:
        return self._policy.of(tenant)

    async def admit(self, tenant: str, estimate: int) -> Ticket | None:
        """Take ``estimate`` tokens and one request of ``tenant``'s budget, or raise RateLimited.

        ``None`` for a tenant without limits. A request bigger than the whole budget is
        InvalidRequest: no wait would let it through.
        """
        limits = self._policy.of(tenant)
        if not limits.limited:
            return None
        budget = _budget(limits)
        need = Tally(max(0, estimate) if budget.tokens else 0, 1 if budget.requests else 0)
        if budget.tokens and need.tokens > budget.tokens:
            raise InvalidRequest(
                f"this request may use up to {need.tokens} tokens (prompt plus maximum response), more "
                f"than tenant '{tenant}' may use in {self._window.seconds} s ({budget.tokens}); "
                f"shorten the conversation, or raise Limits:Tenants:{tenant}:TokensPerMinute (or Limits:Default)"
            )
        state = self._tenants.get(tenant)
        if state is None:
            state = self._tenants[tenant] = _Tenant()
        ticket = self._take(tenant, state, need)
        if ticket is not None:
            return ticket
        self._refuse_if_blocked(tenant, state, need, budget)
        state.waiting += need  # the caller ahead of us sizes its slice for us too
        try:
            await state.lock.acquire()
        finally:
            state.waiting -= need
        try:
            ticket = self._take(tenant, state, need)  # refilled by the caller we waited for
            if ticket is not None:
                return ticket
            self._refuse_if_blocked(tenant, state, need, budget)
            return await self._refill(tenant, state, need, budget)
        finally:
            state.lock.release()

    def settle(self, ticket: Ticket | None, used_tokens: int) -> None:
        """The request ended having used ``used_tokens``: give back the rest of its estimate."""
        if ticket is None or ticket.done:
            return
        ticket.done = True
        self._give_back(ticket, Tally(ticket.tokens - max(0, used_tokens), 0))

    def release(self, ticket: Ticket | None) -> None:
        """The request failed before using anything: give its tokens back (the request counts)."""
        self.settle(ticket, 0)

    def budget(self, tenant: str) -> Budget | None:
        """What ``tenant`` may still use in the current window, as far as this replica knows."""
        limits = self._policy.of(tenant)
        if not limits.limited:
            return None
        state = self._tenants.get(tenant)
        if state is None:  # nothing known here yet (or forgotten after a quiet window): all of it
            left = _budget(limits)
        else:
            self._roll(state, self._window.bucket_at(self._clock()))
            left = state.room + state.slice  # + what this replica owes back (it will be free again)
            for (source, _), amount in state.owed.items():
                if source == state.source:
                    left += amount
        budget = Budget(
            limits.tokens.amount if limits.tokens else None,
            min(left.tokens, limits.tokens.amount) if limits.tokens else None,
            limits.requests.amount if limits.requests else None,
            min(left.requests, limits.requests.amount) if limits.requests else None,
        )
        self._metrics.remaining(tenant, budget)
        return budget

    async def start(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        with contextlib.suppress(StoreUnavailable, TimeoutError):
            await self.flush(force=True)
        for store in self._stores:
            await store.aclose()

    async def flush(self, *, force: bool = False) -> None:
        """Give back what is owed for tenants that did not talk to the store for a bucket."""
        now = self._clock()
        bucket = self._window.bucket_at(now)
        for tenant, state in list(self._tenants.items()):
            self._roll(state, bucket)
            if state.lock.locked():
                continue
            if not state.owed:
                if now - state.synced_at > self._window.seconds + self._window.width and not state.waiting:
                    del self._tenants[tenant]  # idle for a window: nothing of it is still counting
                continue
            if not force and now - state.synced_at < self._window.width:
                continue
            async with state.lock:
                for source in (SHARED, LOCAL):
                    if any(s == source for s, _ in state.owed) and not (source == SHARED and self._circuit.open):
                        await self._exchange(tenant, state, source, bucket, Tally(), Tally())

    # -- internals -------------------------------------------------------------------------

    def _take(self, tenant: str, state: _Tenant, need: Tally) -> Ticket | None:
        bucket = self._window.bucket_at(self._clock())
        self._roll(state, bucket)
        if state.bucket != bucket or need.tokens > state.slice.tokens or need.requests > state.slice.requests:
            return None
        state.slice -= need
        state.used += need
        return Ticket(tenant, state.source, bucket, need.tokens)

    def _roll(self, state: _Tenant, bucket: int) -> None:
        """A new bucket: the old slice's rest is owed back to its bucket; forget dead buckets."""
        if state.bucket == bucket:
            return
        if state.slice:
            self._owe(state, state.source, state.bucket, state.slice)
        if state.used:
            state.used_before, state.used = state.used, Tally()
        state.bucket, state.slice = bucket, Tally()
        oldest = self._window.oldest_live(bucket)
        for key in [k for k in state.owed if k[1] < oldest]:
            del state.owed[key]

    def _owe(self, state: _Tenant, source: int, bucket: int, amount: Tally) -> None:
        key = (source, bucket)
        total = state.owed.get(key, Tally()) + amount
        if total:
            state.owed[key] = total
        else:
            state.owed.pop(key, None)

    def _give_back(self, ticket: Ticket, amount: Tally) -> None:
        state = self._tenants.get(ticket.tenant)
        if state is None or not amount:
            return
        self._roll(state, self._window.bucket_at(self._clock()))
        if state.bucket == ticket.bucket and state.source == ticket.source:
            state.slice += amount  # still this bucket: reusable here at once
            state.used -= amount
            if state.slice.tokens < 0:  # used more than estimated: charge the bucket
                self._owe(state, ticket.source, ticket.bucket, Tally(state.slice.tokens, 0))
                state.slice = Tally(0, state.slice.requests)
        else:
            self._owe(state, ticket.source, ticket.bucket, amount)

    def _refuse_if_blocked(self, tenant: str, state: _Tenant, need: Tally, budget: Tally) -> None:
        now = self._clock()
        if now < state.blocked_until and need.tokens >= state.blocked_need.tokens \
                and need.requests >= state.blocked_need.requests:
            self._refuse(tenant, state.blocked_by, state.blocked_until - now, budget, need)

    async def _refill(self, tenant: str, state: _Tenant, need: Tally, budget: Tally) -> Ticket:
        now = self._clock()
        bucket = self._window.bucket_at(now)
        source = SHARED
        if self._circuit.open:
            source = LOCAL
            if self._deny:
                self._metrics.refused(tenant, "store")
                raise RateLimited(
                    "the rate-limit store is unavailable and Limits:OnStoreFailure is 'deny'; retry shortly",
                    float(max(1, math.ceil(self._circuit.probe_at - now))),
                )
        # Slice size: what this replica used in its last busy bucket or so far in this one (at least
        # this request; so it doubles while demand grows), up to twice the average bucket share, so
        # that contending replicas hold little they do not use.
        self._roll(state, bucket)
        parts = self._window.buckets + 1
        share = Tally(2 * budget.tokens // parts, 2 * budget.requests // parts)
        recent = Tally(max(state.used_before.tokens, state.used.tokens, need.tokens),
                       max(state.used_before.requests, state.used.requests, need.requests))
        want = need + state.waiting + Tally(min(share.tokens, recent.tokens), min(share.requests, recent.requests))
        if state.slice:  # what is left of the slice (not enough of one dimension) rides back first
            self._owe(state, state.source, state.bucket, state.slice)
            state.slice = ZERO
        grant = await self._exchange(tenant, state, source, bucket, need, want)
        if grant is None:  # the shared store failed just now
            return await self._refill(tenant, state, need, budget)
        if grant.refused is not None:
            assert grant.retry_bucket is not None
            wait = self._window.start_of(grant.retry_bucket) - self._clock()
            state.blocked_until, state.blocked_need, state.blocked_by = self._clock() + wait, need, grant.refused
            self._refuse(tenant, grant.refused, wait, budget, need)
        self._roll(state, bucket)
        if state.slice:  # filled meanwhile by a settle: give it back, ours is the fresh slice
            self._owe(state, state.source, state.bucket, state.slice)
            state.slice = ZERO
        state.source = source
        state.slice += grant.granted
        ticket = self._take(tenant, state, need)
        if ticket is None:  # the bucket ended while we waited for the store: try again
            return await self._refill(tenant, state, need, budget)
        return ticket

    async def _exchange(
        self, tenant: str, state: _Tenant, source: int, bucket: int, need: Tally, want: Tally
    ) -> Grant | None:
        """One store round trip; None when the shared store failed (the circuit is then open)."""
        returns = {b: t for (s, b), t in state.owed.items() if s == source}
        change = Exchange(self._window, _budget(self._policy.of(tenant)), bucket, need, want, returns)
        for key in [k for k in state.owed if k[0] == source]:
            del state.owed[key]  # on failure they are dropped: never given back twice
        try:
            grant = await asyncio.wait_for(self._stores[source].update(tenant, change), self._timeout)
        except TimeoutError:
            self._circuit.failed("timeout", f"no answer within {self._timeout * 1000:.0f} ms")
            return None
        except StoreUnavailable as exc:
            self._circuit.failed(exc.reason, exc.detail)
            return None
        if source == SHARED:
            self._circuit.recovered()
        state.room = grant.headroom
        state.synced_at = self._clock()
        return grant

    def _refuse(self, tenant: str, limit: str, wait: float, budget: Tally, need: Tally) -> None:
        self._metrics.refused(tenant, limit)
        seconds = max(1, math.ceil(wait))
        amount = f"{budget.tokens} tokens" if limit == "tokens" else f"{budget.requests} requests"
        asked = f"about {need.tokens} tokens" if limit == "tokens" else "one more request"
        error = RateLimited(
            f"tenant '{tenant}' has used its limit of {amount} per {self._window.seconds} s; this request "
            f"needs {asked}; retry after {seconds} s",
            float(seconds),
        )
        error.budget = self.budget(tenant)
        raise error

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._window.width)
            try:
                await self.flush()
            except StoreUnavailable:
                continue


def _budget(limits: TenantLimits) -> Tally:
    return Tally(limits.tokens.amount if limits.tokens else 0, limits.requests.amount if limits.requests else 0)
