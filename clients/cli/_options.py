"""Options shared by the commands, the client factory and the terminal helpers."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from clients.cli._grpc import GrpcClient
from clients.cli._model import GatewayClient, Message, RequestFailed
from clients.cli._rest import RestClient

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TARGET = "127.0.0.1:8002"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class Transport(StrEnum):
    rest = "rest"
    grpc = "grpc"


TransportOpt = Annotated[
    Transport,
    typer.Option("--transport", "-T", envvar="GATEWAY_TRANSPORT", help="Protocol: REST (HTTP) or gRPC."),
]
UrlOpt = Annotated[
    str, typer.Option("--url", envvar="GATEWAY_URL", help="Base URL of the REST gateway (used with rest).")
]
TargetOpt = Annotated[
    str,
    typer.Option(
        "--target", envvar="GATEWAY_GRPC_TARGET", help="host:port of the gRPC host (used with grpc)."
    ),
]
TenantOpt = Annotated[
    str | None,
    typer.Option(
        "--tenant",
        "-t",
        envvar="GATEWAY_TENANT",
        help="Tenant name (REST: query 'tenant'; gRPC: the request's tenant field). "
        "May be omitted when --token carries a 'tenant' claim.",
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="GATEWAY_TOKEN",
        show_default=False,
        help="Bearer JWT sent as 'Authorization: Bearer …' (REST header / gRPC metadata). Never printed; "
        "prefer the GATEWAY_TOKEN variable to keep it out of shell history.",
    ),
]
SystemOpt = Annotated[
    str | None,
    typer.Option("--system", "-s", help="System message to put first (default: the gateway's SystemPrompt)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (for scripts).")]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds to wait for one request before giving up.")
]
SseOpt = Annotated[
    bool,
    typer.Option(
        "--sse/--json-array",
        help="REST streaming wire format: Server-Sent Events (carries token usage) or the C# sample's "
        "incrementally written JSON array of strings. Ignored with gRPC.",
    ),
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Also print the instance and token counts (on stderr).")
]


@dataclass(frozen=True)
class Connection:
    """Where and how to reach the gateway; builds a `GatewayClient`."""

    transport: Transport
    url: str
    target: str
    token: str | None
    timeout: float
    sse: bool = True
    max_connections: int = 10

    def describe(self) -> str:
        return self.url if self.transport is Transport.rest else self.target

    def client(self) -> GatewayClient:
        if self.transport is Transport.grpc:
            return GrpcClient(self.target, token=self.token, timeout=self.timeout)
        return RestClient(
            self.url,
            token=self.token,
            timeout=self.timeout,
            sse=self.sse,
            max_connections=self.max_connections,
        )

    @asynccontextmanager
    async def open(self) -> AsyncIterator[GatewayClient]:
        client = self.client()
        try:
            yield client
        finally:
            await client.aclose()


def err_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def out_console() -> Console:
    """stdout; wide when not a terminal so tables stay readable in pipes and logs."""
    probe = Console()
    return Console(highlight=False, width=None if probe.is_terminal else 160)


def usage_error(message: str) -> NoReturn:
    err_console().print(f"usage error: {message}", markup=False)
    raise typer.Exit(EXIT_USAGE)


def require_tenant(tenant: str | None, token: str | None) -> None:
    if not (tenant and tenant.strip()) and not token:
        usage_error("give --tenant NAME (or a --token whose JWT carries a 'tenant' claim)")


def report_failure(failure: RequestFailed, as_json: bool) -> NoReturn:
    """One readable line on stderr (and a JSON error document on stdout with --json), exit 1."""
    if as_json:
        import json

        doc = {
            "error": {"status": failure.status, "detail": failure.detail, "retry_after": failure.retry_after}
        }
        sys.stdout.write(json.dumps(doc) + "\n")
    err_console().print(f"error: {failure.one_line()}", markup=False)
    raise typer.Exit(EXIT_FAILED)


def conversation(question: str, system: str | None) -> list[Message]:
    messages = [Message("system", system)] if system else []
    messages.append(Message("user", question))
    return messages


def read_message(words: list[str] | None) -> str:
    """The message from the arguments, or from stdin when none (or '-') is given."""
    if words and words != ["-"]:
        text = " ".join(words)
    elif sys.stdin is None or sys.stdin.isatty():
        usage_error("give the message as arguments, or pipe it on stdin")
    else:
        text = sys.stdin.read()
    text = text.strip()
    if not text:
        usage_error("the message is empty")
    return text
