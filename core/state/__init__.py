"""Shared round-robin state: the port, the in-process store; the Table adapter lives in ``_table``
(imported only when ``StateStore:Type`` is ``table``, since it loads azure-data-tables)."""

from ._location import TableLocation
from ._memory import MemoryStateStore
from ._port import StateStore

__all__ = ["MemoryStateStore", "StateStore", "TableLocation"]
