"""The upstream ports: one Azure OpenAI instance, as the gateway sees it. Imports no SDK.

``Upstream`` speaks the C# sample's routes (messages in, text out); ``Relay`` carries the compatible
API's bodies through unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

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

    async def complete(self, messages: Sequence[ChatMessage]) -> UpstreamReply:
        """One attempt, no retry: the gateway decides what happens after a failure."""
        ...

    async def open_stream(self, messages: Sequence[ChatMessage]) -> UpstreamStream: ...

    async def aclose(self) -> None: ...


Operation = Literal["chat/completions", "embeddings", "responses"]
"""What the compatible API relays: the path after ``/openai/deployments/{deployment}/``, or the
Responses API (``/openai/v1/responses``, the deployment in the body's ``model``)."""


@dataclass(frozen=True, slots=True)
class RelayReply:
    """An upstream's whole answer, bytes as they came; ``usage`` read from the JSON when present.

    Statuses other than 2xx arrive here only when they are the caller's doing (400, 413, 422...):
    rate limits, upstream failures and the gateway's own credential problems are raised instead.
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    usage: Usage | None


class RelayStream(Protocol):
    """An upstream's SSE body as it arrives, cut at event boundaries; ``usage`` once it was seen."""

    status: int
    headers: tuple[tuple[str, str], ...]
    usage: Usage | None

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def texts(self) -> str:
        """The streamed content so far (for the tiktoken fallback when no usage came)."""
        ...

    async def aclose(self) -> None: ...


class Relay(Protocol):
    """One Azure OpenAI instance reached byte for byte (the compatible API's path)."""

    name: str

    async def post(
        self, deployment: str, operation: Operation, body: bytes, *, api_version: str | None
    ) -> RelayReply: ...

    async def open_stream(
        self, deployment: str, operation: Operation, body: bytes, *, api_version: str | None,
        keep_usage_event: bool,
    ) -> RelayStream: ...

    async def aclose(self) -> None: ...
