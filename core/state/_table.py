"""Round-robin state shared by every gateway instance, in Azure Table storage.

``TableStateStore`` hands out slots from a lease: one conditional write takes ``K`` consecutive
slots (``StateStore:LeaseSize``; more when more callers of this process are already waiting), and
the process gives them out locally. ``K = 1`` is strict global alternation; a larger ``K``
removes the write from most requests at the cost of coarser alternation between instances.

Outage semantics (see docs/state-store.md): when a write fails or exceeds ``StateStore:TimeoutMs``,
the caller is served from a local counter that continues where this process's last lease
ended; each such selection counts in ``gateway_state_store_fallbacks_total{reason}`` and
``gateway_state_store_shared`` drops to 0. For the next few seconds no request touches storage;
then one caller probes again and, on success, the next lease starts at or above every slot this
process handed out locally, so one process never hands out a slot twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from .._errors import ConfigurationError
from ._location import TableLocation
from ._table_lease import Lease, SharedStateUnavailable, SlotTable

log = logging.getLogger("core.state_store")

_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_LOG_EVERY_SECONDS = 60.0


class StateStoreMetrics:
    """``gateway_state_store_fallbacks_total{reason}`` and ``gateway_state_store_shared``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.fallbacks = Counter(
            "gateway_state_store_fallbacks",
            "Round-robin selections served from local state because the shared store failed",
            ["reason"],
            registry=registry,
        )
        self.shared = Gauge(
            "gateway_state_store_shared",
            "1 while round-robin state comes from the shared store, 0 while served locally",
            registry=registry,
        )
        self.shared.set(1)


class _Throttle:
    """True at most once per ``interval`` seconds; counts what it held back meanwhile."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self._interval = interval
        self._clock = clock
        self._next_at = float("-inf")
        self.held_back = 0

    def ready(self) -> bool:
        now = self._clock()
        if now < self._next_at:
            self.held_back += 1
            return False
        self._next_at = now + self._interval
        return True


@dataclass(slots=True)
class _Pool:
    """This process's view of one pool: slots ``next .. end-1`` are leased and not yet handed out.

    With K > 1, ``spare`` is the next lease, read ahead in the background (``ahead``) when half
    of the current one is used, so that requests do not wait for storage.
    """

    next: int = 0
    end: int = 0
    waiting: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    spare: Lease | None = None
    ahead: asyncio.Task[None] | None = None

    def has_slot(self) -> bool:
        """A leased slot is available (switching to the spare lease if needed)."""
        if self.next < self.end:
            return True
        spare, self.spare = self.spare, None
        if spare is not None and max(spare.start, self.next) < spare.end:
            # slots below ``next`` may have been handed out locally meanwhile: skip them
            self.next, self.end = max(spare.start, self.next), spare.end
            return True
        return False


class TableStateStore:
    """The :class:`StateStore` port on Azure Table storage, with lease and local fallback."""

    def __init__(
        self,
        table: SlotTable,
        *,
        lease_size: int,
        timeout_seconds: float,
        metrics: StateStoreMetrics,
        probe_interval_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = table
        self._lease_size = max(1, lease_size)
        self._timeout = timeout_seconds
        self._metrics = metrics
        self._probe_interval = probe_interval_seconds
        self._clock = clock
        self._pools: dict[str, _Pool] = {}
        self._failure: str | None = None  # reason of the failure that opened the circuit
        self._probe_at = float("-inf")
        self._warn = _Throttle(_LOG_EVERY_SECONDS, clock)
        self._info = _Throttle(_LOG_EVERY_SECONDS, clock)

    @property
    def location(self) -> str:
        """Where the shared state lives: ``<table endpoint>/<table name>``."""
        return self._table.location

    @property
    def shared(self) -> bool:
        """False while selections are served from local state."""
        return self._failure is None

    async def next_slot(self, pool: str) -> int:
        state = self._pools.get(pool)
        if state is None:
            state = self._pools[pool] = _Pool()
        if state.has_slot():
            return self._hand_out(pool, state)
        if self._circuit_open():
            return self._local(state)
        state.waiting += 1
        try:
            async with state.lock:
                if state.ahead is not None:  # a read-ahead is in flight: use it (bounded by its budget)
                    await asyncio.wait({state.ahead})
                if state.has_slot():  # filled by the caller we waited for, or read ahead
                    return self._hand_out(pool, state)
                if self._circuit_open():
                    return self._local(state)
                lease = await self._take(pool, max(self._lease_size, state.waiting), state.next)
                if lease is None:
                    return self._local(state)
                state.next, state.end = lease.start, lease.end
                return self._hand_out(pool, state)
        finally:
            state.waiting -= 1

    async def aclose(self) -> None:
        tasks = [p.ahead for p in self._pools.values() if p.ahead is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._table.aclose()

    async def _take(self, pool: str, count: int, floor: int) -> Lease | None:
        """A lease from the table within the time budget, or None (the failure is recorded)."""
        try:
            lease: Lease = await asyncio.wait_for(self._table.take(pool, count, floor=floor), self._timeout)
        except TimeoutError:
            self._failed("timeout", f"no answer within {self._timeout * 1000:.0f} ms")
            return None
        except SharedStateUnavailable as exc:
            self._failed(exc.reason, exc.detail)
            return None
        self._recovered()
        return lease

    def _read_ahead(self, pool: str, state: _Pool) -> None:
        """With K > 1, take the next lease in the background once half of this one is used."""
        if (
            self._lease_size == 1
            or state.ahead is not None
            or state.spare is not None
            or (state.end - state.next) * 2 > self._lease_size
            or self._circuit_open()
        ):
            return

        async def fetch(floor: int) -> None:
            try:
                state.spare = await self._take(pool, self._lease_size, floor)
            finally:
                state.ahead = None

        state.ahead = asyncio.get_running_loop().create_task(fetch(state.end))

    def _hand_out(self, pool: str, state: _Pool) -> int:
        slot = state.next
        state.next += 1
        self._read_ahead(pool, state)
        return slot

    def _local(self, state: _Pool) -> int:
        """A slot from local state: continues after the last lease (unique in this process)."""
        self._metrics.fallbacks.labels(reason=self._failure or "error").inc()
        slot = state.next
        state.next += 1
        return slot

    def _circuit_open(self) -> bool:
        return self._failure is not None and self._clock() < self._probe_at

    def _failed(self, reason: str, detail: str) -> None:
        self._failure = reason
        self._probe_at = self._clock() + self._probe_interval
        self._metrics.shared.set(0)
        if self._warn.ready():
            log.warning(
                "round-robin state store unavailable (%s: %s); serving from local state, "
                "retrying every %.0f s (%d similar messages suppressed)",
                reason,
                detail,
                self._probe_interval,
                self._warn.held_back,
            )
            self._warn.held_back = 0

    def _recovered(self) -> None:
        if self._failure is None:
            return
        self._failure = None
        self._metrics.shared.set(1)
        if self._info.ready():
            log.info("round-robin state store available again; shared state in use")


# The SDK's own retries would blow the time budget; the store retries 412s itself and falls back.
_CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 0}


def open_table(location: TableLocation) -> tuple[Any, Any]:
    """(TableClient, credential or None) for ``location``; no network I/O."""
    from azure.data.tables.aio import TableClient

    if not _TABLE_NAME.match(location.table_name):
        raise ConfigurationError(location.table_name_key, "must be 3-63 letters or digits and start with a letter")
    if location.connection_string.strip():
        try:
            client = TableClient.from_connection_string(
                location.connection_string.strip(), table_name=location.table_name, **_CLIENT_OPTIONS
            )
        except ValueError:
            key = location.connection_string_key
            raise ConfigurationError(key, "is not a valid storage connection string") from None
        return client, None
    if not re.match(r"^https?://[^\s/]+", location.endpoint):
        raise ConfigurationError(location.endpoint_key, "must be an https URL of a Table endpoint")
    from azure.identity.aio import DefaultAzureCredential

    credential = DefaultAzureCredential(managed_identity_client_id=location.client_id or None)
    client = TableClient(location.endpoint, location.table_name, credential=credential, **_CLIENT_OPTIONS)
    return client, credential


def table_state_store(
    location: TableLocation,
    *,
    lease_size: int,
    timeout_seconds: float,
    registry: CollectorRegistry,
    probe_interval_seconds: float = 5.0,
) -> TableStateStore:
    """Round-robin state in the table at ``location``; no network I/O (reached on first use)."""
    client, credential = open_table(location)
    return TableStateStore(
        SlotTable(client, credential=credential),
        lease_size=lease_size,
        timeout_seconds=timeout_seconds,
        metrics=StateStoreMetrics(registry),
        probe_interval_seconds=probe_interval_seconds,
    )
