"""Values shared by both transports: what a call returns and how it fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Message:
    """One turn of a conversation, as the gateway's REST and gRPC contracts carry it."""

    role: str
    content: str


@dataclass(frozen=True)
class Usage:
    """Token counts reported by the gateway for one call (``None`` when not reported)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None

    @property
    def known(self) -> bool:
        return self.prompt_tokens is not None or self.completion_tokens is not None


@dataclass(frozen=True)
class Reply:
    """A successful call: text plus what the gateway told about it."""

    text: str
    status: str
    instance: str | None = None
    usage: Usage = field(default_factory=Usage)

    def as_json(self) -> dict[str, object]:
        return {
            "text": self.text,
            "status": self.status,
            "instance": self.instance,
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
                "total_tokens": self.usage.total_tokens,
            },
        }


class RequestFailed(Exception):
    """A call that did not succeed, with a one-line, secret-free explanation.

    ``status`` is the HTTP status ("429") for REST, the gRPC code name ("RESOURCE_EXHAUSTED")
    for gRPC, or a client-side condition: "connect-error", "timeout", "protocol-error".
    """

    def __init__(self, status: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.retry_after = retry_after

    def one_line(self) -> str:
        text = f"{self.status}: {self.detail}"
        if self.retry_after is not None:
            text += f" (retry after {self.retry_after:g}s)"
        return " ".join(text.split())


class DeltaSink(Protocol):
    def __call__(self, delta: str, /) -> None: ...


class GatewayClient(Protocol):
    """The narrow seam the commands and the traffic generator use; one implementation per transport."""

    transport: str

    async def echo(self, tenant: str | None, value: int) -> Reply: ...

    async def chat(self, tenant: str | None, messages: list[Message]) -> Reply: ...

    async def stream(self, tenant: str | None, messages: list[Message], on_delta: DeltaSink) -> Reply: ...

    async def aclose(self) -> None: ...


def parse_int(value: str | None) -> int | None:
    """Header / metadata value -> int, tolerating absence and junk."""
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def usage_from(prompt: int | None, completion: int | None, total: int | None = None) -> Usage:
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    return Usage(prompt, completion, total)
