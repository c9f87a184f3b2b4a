"""The budget store in process memory: one replica, or the fallback while the shared store is down."""

from __future__ import annotations

from collections.abc import Callable

from ._port import Row, T


class MemoryBudgetStore:
    """Rows in a dict; a change runs with no await between read and write, so it is atomic.

    At most ``max_rows`` tenants are kept: past that, the row updated longest ago is dropped (with
    ``Limits:Default`` every tenant name gets a row, and names are not bounded without auth).
    """

    def __init__(self, max_rows: int = 100_000) -> None:
        self._rows: dict[str, Row] = {}
        self._max_rows = max_rows

    async def update(self, key: str, change: Callable[[Row], tuple[Row, T]]) -> T:
        row, result = change(self._rows.pop(key, {}))
        if row:
            self._rows[key] = row  # re-inserted last: the dict's order is least recently updated first
            if len(self._rows) > self._max_rows:
                del self._rows[next(iter(self._rows))]
        return result

    async def aclose(self) -> None:
        return None
