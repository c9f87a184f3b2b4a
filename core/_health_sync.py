"""Replicas share what they learn about instances: cool-downs, open circuits, misconfiguration.

A background task, every ``Gateway:HealthSyncSeconds`` (1 s) and at once when this replica
learns something: read every instance's record from the :class:`HealthBoard` (one storage
read), adopt later deadlines, and publish this replica's deadlines where they are later than
the record's. Requests never touch storage: they
read :class:`Health` in memory, so what one replica learns reaches the others within about one
interval. A storage failure is logged (throttled) and retried at the next tick; each replica
keeps working on what it learned itself meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ._health import Deadlines, Health
from .state import BoardUnavailable, HealthBoard, HealthRecord

log = logging.getLogger("core.health_sync")

_EPSILON = 0.05  # seconds: deadlines closer than this are the same deadline
_LOG_EVERY_SECONDS = 60.0


class HealthSync:
    def __init__(
        self,
        health: Health,
        board: HealthBoard,
        *,
        interval_seconds: float,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._health = health
        self._board = board
        self._interval = interval_seconds
        self._wall = wall
        self._monotonic = monotonic
        self._task: asyncio.Task[None] | None = None
        self._warned_at = float("-inf")
        self._changed = asyncio.Event()
        health.on_change = self._changed.set  # publish what this replica learns at once

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._board.aclose()

    async def sync_once(self) -> None:
        """Read, adopt, publish: one round (raises :class:`BoardUnavailable`)."""
        records = {r.instance: r for r in await self._board.read()}
        offset = self._monotonic() - self._wall()  # wall time + offset = monotonic time
        for record in records.values():
            self._health.merge(record.instance, Deadlines(
                _to(record.cooling_until, offset), _to(record.open_until, offset),
                _to(record.misconfigured_until, offset)), record.detail)
        newer = [mine for name in self._health.names
                 if (mine := self._record(name, offset)) is not None and _later(mine, records.get(name))]
        if newer:
            await self._board.publish(newer)

    async def _run(self) -> None:
        while True:
            try:
                await self.sync_once()
            except BoardUnavailable as exc:
                now = self._monotonic()
                if now - self._warned_at >= _LOG_EVERY_SECONDS:
                    self._warned_at = now
                    log.warning("instance health not shared with other replicas (%s: %s); retrying every %g s",
                                exc.reason, exc.detail, self._interval)
            try:
                await asyncio.wait_for(self._changed.wait(), self._interval)
            except TimeoutError:
                pass
            self._changed.clear()

    def _record(self, name: str, offset: float) -> HealthRecord | None:
        """This replica's deadlines for ``name`` in wall time; None when none is in the future."""
        now = self._monotonic()
        mine = self._health.deadlines(name)
        if max(mine.cooling, mine.open, mine.misconfigured) <= now:
            return None
        return HealthRecord(name, _from(mine.cooling, offset, now), _from(mine.open, offset, now),
                            _from(mine.misconfigured, offset, now), self._health.misconfigured_detail(name))


def _to(wall_until: float, offset: float) -> float:
    return wall_until + offset if wall_until > 0 else 0.0


def _from(monotonic_until: float, offset: float, now: float) -> float:
    return monotonic_until - offset if monotonic_until > now else 0.0


def _later(mine: HealthRecord, theirs: HealthRecord | None) -> bool:
    if theirs is None:
        return True
    return (mine.cooling_until > theirs.cooling_until + _EPSILON or mine.open_until > theirs.open_until + _EPSILON
            or mine.misconfigured_until > theirs.misconfigured_until + _EPSILON)
