"""The state store port: shared round-robin slots (memory in one process, Table storage across many)."""

from __future__ import annotations

from typing import Protocol


class StateStore(Protocol):
    """Shared round-robin state (memory in one process, Azure Table storage across instances)."""

    async def next_slot(self, pool: str) -> int:
        """Take the next slot of ``pool``: 0, 1, 2, ... each value handed out once per pool."""
        ...

    async def aclose(self) -> None: ...
