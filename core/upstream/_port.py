"""The upstream port: one Azure OpenAI instance, as the gateway sees it. Imports no SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .._values import ChatMessage, Usage
from ..config import ServiceSettings

TokenProvider = Callable[[], Awaitable[str]]
"""Returns a bearer token for Azure OpenAI (Entra ID); called before each request."""


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    text: str
    usage: Usage | None
    model: str = ""  # the model that answered (``model`` of the response), for traces
    finish_reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """A text delta, or (at the end, when the upstream sends it) the usage."""

    text: str = ""
    usage: Usage | None = None
    model: str = ""  # first chunk's ``model``, for traces
    finish_reason: str = ""


class UpstreamStream(Protocol):
    def __aiter__(self) -> AsyncIterator[StreamEvent]: ...

    async def aclose(self) -> None: ...


class Upstream(Protocol):
    """One Azure OpenAI instance."""

    name: str
    settings: ServiceSettings

    async def complete(self, messages: Sequence[ChatMessage], *, retry: bool) -> UpstreamReply: ...

    async def open_stream(self, messages: Sequence[ChatMessage], *, retry: bool) -> UpstreamStream: ...

    async def aclose(self) -> None: ...
