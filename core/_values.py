"""The values the core passes around: messages, usage, completions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]
Method = Literal["chat", "stream", "embeddings"]


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


__all__ = [
    "ChatMessage",
    "Completion",
    "Method",
    "Role",
    "Usage",
]
