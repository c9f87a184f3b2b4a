"""Ports: the narrow interfaces between the core and outside systems, and the values they carry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]
Method = Literal["chat", "stream"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished chat completion: the text, who served it, and what it cost."""

    text: str
    instance: str
    usage: Usage
    usage_reported: bool  # False when the upstream gave no usage and tiktoken counted instead


class StateStore(Protocol):
    """Shared round-robin state (memory in one process, Azure Table storage across instances)."""

    async def next_slot(self, pool: str) -> int:
        """Take the next slot of ``pool``: 0, 1, 2, ... each value handed out once per pool."""
        ...

    async def aclose(self) -> None: ...


class MemoryStateStore:
    """In-process round-robin counters; safe under asyncio concurrency (no await between read and write)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    async def next_slot(self, pool: str) -> int:
        slot = self._next.get(pool, 0)
        self._next[pool] = slot + 1
        return slot

    async def aclose(self) -> None:
        return None


__all__ = [
    "ChatMessage",
    "Completion",
    "MemoryStateStore",
    "Method",
    "Role",
    "StateStore",
    "Usage",
]
