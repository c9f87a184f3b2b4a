"""Shared round-robin state: the port, the in-process store; the Table adapter lives in ``_table``
(imported only when ``StateStore:Type`` is ``table``, since it loads azure-data-tables).
Instance health shared between replicas: the port in ``_health_port``, the Table adapter in
``_health_table`` (same rule)."""

from ._health_port import BoardUnavailable, HealthBoard, HealthRecord
from ._location import TableLocation
from ._memory import MemoryStateStore
from ._port import StateStore

__all__ = ["BoardUnavailable", "HealthBoard", "HealthRecord", "MemoryStateStore", "StateStore", "TableLocation"]
