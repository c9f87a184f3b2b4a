"""Interactive mode: a prompt loop keeping the conversation history, with slash commands."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace

from rich.console import Console

from clients.cli._model import GatewayClient, Message, RequestFailed
from clients.cli._options import Connection, Transport

HELP = """\
Type a question and press Enter; the answer streams back and the history is kept.
  /echo N              call Echo with the integer N
  /tenant NAME         switch tenant (the history is kept)
  /transport rest|grpc switch protocol
  /stream on|off       stream answers token by token (on) or wait for the whole answer (off)
  /system TEXT         set the system message (empty: the gateway's default)
  /reset               forget the history
  /history             show the history
  /quit                leave (Ctrl-D works too)"""


@dataclass
class Session:
    connection: Connection
    tenant: str | None
    system: str | None
    streaming: bool = True
    history: list[Message] = field(default_factory=list)
    clients: dict[Transport, GatewayClient] = field(default_factory=dict)

    def client(self) -> GatewayClient:
        transport = self.connection.transport
        if transport not in self.clients:
            self.clients[transport] = self.connection.client()
        return self.clients[transport]

    def prompt(self) -> str:
        mode = "stream" if self.streaming else "chat"
        return f"[{self.connection.transport.value} · {self.tenant or 'token tenant'} · {mode}] > "

    def messages(self) -> list[Message]:
        head = [Message("system", self.system)] if self.system else []
        return head + self.history

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


async def run_interactive(connection: Connection, tenant: str | None, system: str | None) -> None:
    out = Console(highlight=False, soft_wrap=True)
    session = Session(connection, tenant, system)
    out.print(
        f"Connected to {connection.describe()} over {connection.transport.value}. /help for commands.",
        markup=False,
    )
    try:
        while True:
            try:
                line = _read_line(session.prompt())  # blocking is fine: nothing else runs meanwhile
            except EOFError:
                out.print()
                return
            if not line.strip():
                continue
            if line.startswith("/"):
                if not await _command(session, line.strip(), out):
                    return
            else:
                await _ask(session, line.strip(), out)
    finally:
        await session.aclose()


def _read_line(prompt: str) -> str:
    sys.stdout.write(prompt)
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


async def _ask(session: Session, question: str, out: Console) -> None:
    session.history.append(Message("user", question))

    def on_delta(delta: str) -> None:
        sys.stdout.write(delta)
        sys.stdout.flush()

    try:
        if session.streaming:
            reply = await session.client().stream(session.tenant, session.messages(), on_delta)
            sys.stdout.write("\n")
        else:
            reply = await session.client().chat(session.tenant, session.messages())
            sys.stdout.write(reply.text + "\n")
    except RequestFailed as failure:
        session.history.pop()
        out.print(f"\nerror: {failure.one_line()}", markup=False, style="red")
        return
    session.history.append(Message("assistant", reply.text))
    tokens = f"{reply.usage.total_tokens} tokens" if reply.usage.total_tokens is not None else "tokens n/a"
    out.print(f"({reply.instance or 'instance n/a'} · {tokens})", markup=False, style="dim")


async def _command(session: Session, line: str, out: Console) -> bool:
    """Run a slash command; False means leave."""
    name, _, arg = line.partition(" ")
    arg = arg.strip()
    if name in ("/quit", "/exit", "/q"):
        return False
    if name == "/help":
        out.print(HELP, markup=False)
    elif name == "/echo":
        await _echo(session, arg, out)
    elif name == "/tenant" and arg:
        session.tenant = arg
    elif name == "/transport" and arg in ("rest", "grpc"):
        session.connection = replace(session.connection, transport=Transport(arg))
    elif name == "/stream" and arg in ("on", "off"):
        session.streaming = arg == "on"
    elif name == "/system":
        session.system = arg or None
    elif name == "/reset":
        session.history.clear()
        out.print("history cleared", markup=False)
    elif name == "/history":
        for message in session.messages():
            out.print(f"{message.role}: {message.content}", markup=False)
    else:
        out.print(f"unknown or incomplete command {line!r}; /help lists them", markup=False, style="yellow")
    return True


async def _echo(session: Session, arg: str, out: Console) -> None:
    try:
        value = int(arg)
    except ValueError:
        out.print("usage: /echo N (an integer)", markup=False, style="yellow")
        return
    try:
        reply = await session.client().echo(session.tenant, value)
    except RequestFailed as failure:
        out.print(f"error: {failure.one_line()}", markup=False, style="red")
        return
    out.print(reply.text, markup=False)
