"""The port through which replicas share instance health: one small record per instance.

Times are wall-clock epoch seconds (replicas do not share a monotonic clock); 0 means "not".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class HealthRecord:
    instance: str
    cooling_until: float = 0.0
    open_until: float = 0.0
    misconfigured_until: float = 0.0
    detail: str = ""  # why it is misconfigured: a sentence naming a setting, never a secret


class BoardUnavailable(Exception):
    """The board could not be read or written; ``reason`` is short, ``detail`` a sentence (no secret)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class HealthBoard(Protocol):
    """Where replicas publish and read :class:`HealthRecord` values (raises :class:`BoardUnavailable`)."""

    async def read(self) -> list[HealthRecord]: ...

    async def publish(self, records: Sequence[HealthRecord]) -> None: ...

    async def aclose(self) -> None: ...
