"""The ledger store port: where the book of record is kept (memory, Azure Table storage). No SDK."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from ._rows import LedgerRow


class LedgerStore(Protocol):
    async def write(self, rows: Sequence[LedgerRow]) -> None:
        """Store each row's cumulative counts (insert or replace): idempotent by construction.

        Raises :class:`LedgerUnavailable` when the rows could not all be stored; the caller keeps
        them and writes them again later.
        """
        ...

    async def read(self, tenant: str | None, start: datetime, end: datetime) -> list[LedgerRow]:
        """Every writer's rows for ``tenant`` (None: all tenants) whose hour overlaps ``[start, end)``."""
        ...

    async def aclose(self) -> None: ...


class LedgerUnavailable(Exception):
    """The store could not be reached or refused a write; ``reason`` is a short metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
