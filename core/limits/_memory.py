"""The budget store in process memory: one replica, or the fallback while the shared store is down."""

from __future__ import annotations

from collections.abc import Callable

from ._port import Row, T


class MemoryBudgetStore:
    """Rows in a dict; a change runs with no await between read and write, so it is atomic."""

    def __init__(self) -> None:
        self._rows: dict[str, Row] = {}

    async def update(self, key: str, change: Callable[[Row], tuple[Row, T]]) -> T:
        row, result = change(self._rows.get(key, {}))
        if row:
            self._rows[key] = row
        else:
            self._rows.pop(key, None)
        return result

    async def aclose(self) -> None:
        return None
