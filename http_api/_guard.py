"""What the local REST server does about slow, huge or vanishing clients (``RestHost:*`` limits).

Two layers, because uvicorn has no header limit for httptools and no header/body read timeouts:

- :func:`guarded_protocol`: uvicorn's httptools protocol plus a cap on request line + headers
  (431), a deadline for them from the first byte (408) and the connection limit as a problem
  (503). The connection is answered and closed before the app ever sees it; ``on_cutoff``
  counts it (route ``connection``).
- :class:`BodyGuard`: ASGI middleware giving the body a deadline (the handler answers 408 and
  counts it), and reading and discarding the unread rest of a body (up to ``MaxDrainBytes``)
  before an early answer (413, 401, 404...) goes out, so clients that write the whole body
  before reading (urllib, requests, httpx) read the answer instead of a connection reset.
  A request whose whole body uvicorn has already parsed (most: a small body comes with its
  headers) passes straight through: no deadline to keep, nothing to drain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ._limits import RestHostSettings
from ._problems import PROBLEM_TYPE, RequestTimeout

log = logging.getLogger("http_api")

LINGER_SECONDS = 2.0  # after answering a cut-off connection, how long its in-flight bytes are read
Cutoff = Callable[[int, float], None]  # (status, seconds since the connection's request began)
ASGIApp = Callable[..., Any]


def _raw_problem(status: int, reason: str, title: str, detail: str, retry_after: int | None = None) -> bytes:
    body = orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    extra = f"retry-after: {retry_after}\r\n" if retry_after is not None else ""
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: {PROBLEM_TYPE}\r\n{extra}"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


def guarded_protocol(limits: RestHostSettings, on_cutoff: Cutoff) -> type[HttpToolsProtocol]:
    """An httptools protocol class enforcing ``MaxHeaderBytes`` and ``HeaderTimeoutSeconds``."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_bytes = 0
        _awaiting_headers = True
        _rejected = False
        _discarded = 0
        _header_timer: asyncio.TimerHandle | None = None
        _request_began = 0.0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._request_began = time.monotonic()
            self._header_timer = self.loop.call_later(limits.header_timeout_seconds, self._headers_too_slow)

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            if self._awaiting_headers and self._header_bytes and not self._rejected:
                on_cutoff(499, time.monotonic() - self._request_began)  # hung up mid-headers
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._rejected:  # lingering after an answer: discard what is still in flight
                self._discarded += len(data)
                if self._discarded > limits.max_drain_bytes:
                    self.transport.close()
                return
            if self._awaiting_headers:
                if self._header_timer is None:
                    self._request_began = time.monotonic()
                    self._header_timer = self.loop.call_later(
                        limits.header_timeout_seconds, self._headers_too_slow)
                self._header_bytes += len(data)
            super().data_received(data)
            if self._awaiting_headers and not self._rejected and self._header_bytes > limits.max_header_bytes:
                self._reject(431, "Request Header Fields Too Large",
                             f"the request line and headers are over {limits.max_header_bytes} bytes "
                             "(RestHost:MaxHeaderBytes)")

        def send_400_response(self, msg: str) -> None:
            self._reject(400, "Bad Request", "the request is not valid HTTP/1.1", log_it=False)  # uvicorn logged it

        def on_headers_complete(self) -> None:
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > limits.max_header_bytes:
                self._reject(431, "Request Header Fields Too Large",
                             f"the request line and headers are over {limits.max_header_bytes} bytes "
                             "(RestHost:MaxHeaderBytes)")
                return
            # self.connections includes this one; self.tasks not yet this request's
            if len(self.connections) > limits.max_connections or len(self.tasks) >= limits.max_connections:
                self._reject(503, "Service Unavailable",
                             f"the server is at its limit of {limits.max_connections} concurrent connections "
                             "(RestHost:MaxConnections); retry shortly", retry_after=1)
                return
            self._awaiting_headers = False
            self._cancel_header_timer()
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not self._rejected:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if self._rejected:
                return
            super().on_message_complete()
            self._awaiting_headers = True
            self._header_bytes = 0

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self._rejected or self.transport.is_closing():
                return
            if self._header_bytes == 0:  # an idle connection that never sent a request: just close
                self.transport.close()
                return
            self._reject(408, "Request Timeout",
                         f"the request headers did not arrive within {limits.header_timeout_seconds:g} s "
                         "(RestHost:HeaderTimeoutSeconds)")

        def _reject(self, status: int, reason: str, detail: str, *, log_it: bool = True,
                    retry_after: int | None = None) -> None:
            """Answer, then close gracefully: FIN first, and discard what the client still sends for
            a moment (a plain close would reset the connection and the client could lose the answer)."""
            self._rejected = True
            self._cancel_header_timer()
            if log_it:
                client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
                log.info("closed the connection from %s: %s", client, detail)
            on_cutoff(status, time.monotonic() - self._request_began)
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True  # a request in flight (pipelining): it answers no more
                self.cycle.message_event.set()
            self.transport.write(_raw_problem(status, reason, reason, detail, retry_after))
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)

    return GuardedHttpToolsProtocol


class BodyGuard:
    """ASGI middleware: a deadline for the request body, and draining before early answers."""

    def __init__(self, app: ASGIApp, limits: RestHostSettings) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: dict[str, Any], receive: ASGIApp, send: ASGIApp) -> None:
        if scope["type"] != "http" or _whole_body_read(receive):
            await self.app(scope, receive, send)  # nothing left to wait for, nothing to drain
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        state = _BodyState(more=chunked or (declared.isdigit() and int(declared) > 0),
                           deadline=asyncio.get_running_loop().time() + self.limits.body_timeout_seconds,
                           expects_continue=headers.get(b"expect", b"").lower() == b"100-continue")
        limits = self.limits

        async def guarded_receive() -> dict[str, Any]:
            if not state.more:
                return await receive()  # type: ignore[no-any-return]
            message = await state.receive(receive, limits)
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and state.more:
                too_big = declared.isdigit() and int(declared) > limits.max_drain_bytes  # not worth reading
                if not (state.timed_out or too_big or (state.expects_continue and not state.read_any)):
                    await state.drain(receive, limits)
                if state.more:  # the rest of the body stays unread: the connection cannot be reused
                    message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, guarded_receive, guarded_send)


def _whole_body_read(receive: ASGIApp) -> bool:
    """True when uvicorn has already parsed the whole request (a small body arrives with its headers):
    ``receive`` is then uvicorn's ``RequestResponseCycle.receive``, whose ``more_body`` is False."""
    return getattr(getattr(receive, "__self__", None), "more_body", True) is False


class _BodyState:
    def __init__(self, *, more: bool, deadline: float, expects_continue: bool) -> None:
        self.more = more
        self.deadline = deadline
        self.expects_continue = expects_continue
        self.read_any = False
        self.timed_out = False

    async def receive(self, receive: ASGIApp, limits: RestHostSettings) -> dict[str, Any]:
        try:
            async with asyncio.timeout_at(self.deadline):  # no extra task, unlike wait_for
                message: dict[str, Any] = await receive()
        except TimeoutError:
            self.timed_out = True
            raise RequestTimeout(f"the request body did not arrive within {limits.body_timeout_seconds:g} s "
                                 "(RestHost:BodyTimeoutSeconds)") from None
        self.read_any = True
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.more = False
        return message

    async def drain(self, receive: ASGIApp, limits: RestHostSettings) -> None:
        """Read and discard the rest of the body, up to MaxDrainBytes and the body deadline."""
        drained = 0
        while self.more and drained <= limits.max_drain_bytes:
            try:
                message = await self.receive(receive, limits)
            except RequestTimeout:
                return
            drained += len(message.get("body", b""))
