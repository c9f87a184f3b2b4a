"""`python -m clients.cli`: echo / chat / stream / interactive / traffic against the gateway."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from typing import Annotated, TypeVar

import typer

from clients.cli._compat_cmd import compat_chat, compat_embed
from clients.cli._interactive import run_interactive
from clients.cli._keygen import keygen
from clients.cli._model import Reply, RequestFailed
from clients.cli._options import (
    DEFAULT_TARGET,
    DEFAULT_URL,
    Connection,
    JsonOpt,
    SseOpt,
    SystemOpt,
    TargetOpt,
    TenantOpt,
    TimeoutOpt,
    TokenOpt,
    Transport,
    TransportOpt,
    UrlOpt,
    VerboseOpt,
    conversation,
    err_console,
    read_message,
    report_failure,
    require_tenant,
)
from clients.cli._traffic_cmd import traffic
from clients.cli._usage_cmd import usage

EPILOG = (
    "Exit codes: 0 success; 1 the request failed (gateway error, unreachable, or — for traffic — any "
    "unexpected status); 2 usage error (bad or missing option). Environment: GATEWAY_URL, "
    "GATEWAY_GRPC_TARGET, GATEWAY_TRANSPORT, GATEWAY_TENANT, GATEWAY_TOKEN."
)

app = typer.Typer(
    name="gateway-cli",
    help="Console client and traffic generator for the multitenant Azure OpenAI gateway (REST and gRPC).",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

MessageArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="The question (several words are joined). Omit it or pass '-' to read stdin.", show_default=False
    ),
]

T = TypeVar("T")


def _run(work: Coroutine[object, object, T]) -> T:
    try:
        return asyncio.run(work)
    except KeyboardInterrupt:
        err_console().print("interrupted", markup=False)
        raise typer.Exit(130) from None


def _print_usage_line(reply: Reply) -> None:
    usage = reply.usage
    tokens = (
        f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion = {usage.total_tokens} tokens"
        if usage.known
        else "tokens n/a"
    )
    err_console().print(f"[{reply.status}] instance: {reply.instance or 'n/a'} · {tokens}", markup=False)


@app.command()
def echo(
    value: Annotated[int, typer.Argument(help="The integer to echo back.")],
    tenant: TenantOpt = None,
    transport: TransportOpt = Transport.rest,
    url: UrlOpt = DEFAULT_URL,
    target: TargetOpt = DEFAULT_TARGET,
    token: TokenOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Call Echo: the gateway answers 'tenant: <tenant> value: <VALUE>' without calling Azure OpenAI."""
    require_tenant(tenant, token)
    connection = Connection(transport, url, target, token, timeout)

    async def work() -> Reply:
        async with connection.open() as client:
            return await client.echo(tenant, value)

    try:
        reply = _run(work())
    except RequestFailed as failure:
        report_failure(failure, as_json)
    if as_json:
        print(json.dumps({"transport": transport.value, **reply.as_json()}))
    else:
        print(reply.text)


@app.command()
def chat(
    message: MessageArg = None,
    tenant: TenantOpt = None,
    transport: TransportOpt = Transport.rest,
    url: UrlOpt = DEFAULT_URL,
    target: TargetOpt = DEFAULT_TARGET,
    token: TokenOpt = None,
    system: SystemOpt = None,
    timeout: TimeoutOpt = 120.0,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Ask one question and print the whole completion when it is ready."""
    require_tenant(tenant, token)
    messages = conversation(read_message(message), system)
    connection = Connection(transport, url, target, token, timeout)

    async def work() -> Reply:
        async with connection.open() as client:
            return await client.chat(tenant, messages)

    try:
        reply = _run(work())
    except RequestFailed as failure:
        report_failure(failure, as_json)
    if as_json:
        print(json.dumps({"transport": transport.value, **reply.as_json()}))
        return
    print(reply.text)
    if verbose:
        _print_usage_line(reply)


@app.command()
def stream(
    message: MessageArg = None,
    tenant: TenantOpt = None,
    transport: TransportOpt = Transport.rest,
    url: UrlOpt = DEFAULT_URL,
    target: TargetOpt = DEFAULT_TARGET,
    token: TokenOpt = None,
    system: SystemOpt = None,
    sse: SseOpt = True,
    timeout: TimeoutOpt = 120.0,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Ask one question and print the completion token by token as it arrives."""
    require_tenant(tenant, token)
    messages = conversation(read_message(message), system)
    connection = Connection(transport, url, target, token, timeout, sse=sse)
    chunks: list[str] = []

    def on_delta(delta: str) -> None:
        chunks.append(delta)
        if not as_json:
            sys.stdout.write(delta)
            sys.stdout.flush()

    async def work() -> Reply:
        async with connection.open() as client:
            return await client.stream(tenant, messages, on_delta)

    try:
        reply = _run(work())
    except RequestFailed as failure:
        if chunks and not as_json:
            sys.stdout.write("\n")
        report_failure(failure, as_json)
    if as_json:
        print(json.dumps({"transport": transport.value, **reply.as_json(), "chunks": len(chunks)}))
        return
    sys.stdout.write("\n")
    if verbose:
        _print_usage_line(reply)


@app.command()
def interactive(
    tenant: TenantOpt = None,
    transport: TransportOpt = Transport.rest,
    url: UrlOpt = DEFAULT_URL,
    target: TargetOpt = DEFAULT_TARGET,
    token: TokenOpt = None,
    system: SystemOpt = None,
    sse: SseOpt = True,
    timeout: TimeoutOpt = 120.0,
) -> None:
    """A conversation at the prompt: each line is a question (the history is kept); /help lists commands."""
    require_tenant(tenant, token)
    connection = Connection(transport, url, target, token, timeout, sse=sse)
    _run(run_interactive(connection, tenant, system))


app.command()(traffic)
app.command()(keygen)
app.command("compat-chat")(compat_chat)
app.command("compat-embed")(compat_embed)


def main() -> None:
    app()
app.command()(usage)
