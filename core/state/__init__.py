"""Shared round-robin state: the port, the in-process store; Table storage lives in ``_table``."""

from ._memory import MemoryStateStore
from ._port import StateStore

__all__ = ["MemoryStateStore", "StateStore"]
