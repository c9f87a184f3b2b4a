"""The in-process ledger store (``StateStore:Type=memory``): one process, gone when it stops."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ._rows import LedgerKey, LedgerRow, in_range


class MemoryLedgerStore:
    def __init__(self) -> None:
        self._rows: dict[LedgerKey, LedgerRow] = {}

    async def write(self, rows: Sequence[LedgerRow]) -> None:
        for row in rows:
            self._rows[row.key] = row

    async def read(self, tenant: str | None, start: datetime, end: datetime) -> list[LedgerRow]:
        return [
            row for key, row in self._rows.items()
            if (tenant is None or key.tenant == tenant) and in_range(key.hour, start, end)
        ]

    async def aclose(self) -> None:
        return None
