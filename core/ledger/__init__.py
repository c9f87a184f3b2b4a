"""The usage ledger: per tenant x instance x deployment x hour, durable, exact, cheap on the hot path."""

from ._book import Ledger, Price
from ._memory import MemoryLedgerStore
from ._port import LedgerStore, LedgerUnavailable
from ._rows import COLUMNS, Counts, GroupBy, LedgerKey, LedgerRow, UsageLine

__all__ = [
    "COLUMNS",
    "Counts",
    "GroupBy",
    "Ledger",
    "LedgerKey",
    "LedgerRow",
    "LedgerStore",
    "LedgerUnavailable",
    "MemoryLedgerStore",
    "Price",
    "UsageLine",
]
