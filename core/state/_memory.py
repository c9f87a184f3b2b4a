"""The in-process state store: one process, no outside system."""

from __future__ import annotations


class MemoryStateStore:
    """In-process round-robin counters; safe under asyncio concurrency (no await between read and write)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    async def next_slot(self, pool: str) -> int:
        slot = self._next.get(pool, 0)
        self._next[pool] = slot + 1
        return slot

    async def aclose(self) -> None:
        return None
