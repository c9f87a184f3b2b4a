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
class Budget:
    """What a limited tenant may still use in the current window (``None``: that limit is off).

    ``headers()`` gives OpenAI's ``x-ratelimit-*`` names; both hosts send them as they are
    (REST headers, gRPC metadata).
    """

    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    limit_requests: int | None = None
    remaining_requests: int | None = None

    def headers(self) -> tuple[tuple[str, str], ...]:
        pairs: list[tuple[str, str]] = []
        if self.limit_tokens is not None and self.remaining_tokens is not None:
            pairs += [("x-ratelimit-limit-tokens", str(self.limit_tokens)),
                      ("x-ratelimit-remaining-tokens", str(max(0, self.remaining_tokens)))]
        if self.limit_requests is not None and self.remaining_requests is not None:
            pairs += [("x-ratelimit-limit-requests", str(self.limit_requests)),
                      ("x-ratelimit-remaining-requests", str(max(0, self.remaining_requests)))]
        return tuple(pairs)


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished chat completion: the text, who served it, and what it cost."""

    text: str
    instance: str
    usage: Usage
    usage_reported: bool  # False when the upstream gave no usage and tiktoken counted instead
    budget: Budget | None = None  # the tenant's remaining budget, when it has limits

    def with_budget(self, budget: Budget) -> Completion:
        return Completion(self.text, self.instance, self.usage, self.usage_reported, budget)


__all__ = [
    "Budget",
    "ChatMessage",
    "Completion",
    "Method",
    "Role",
    "Usage",
]
