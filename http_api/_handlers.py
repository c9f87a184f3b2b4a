"""REST handlers shared by the Azure Functions app and the local uvicorn server.

Each handler takes a FastAPI ``Request`` and returns a ``Response`` (the types the Functions
FastAPI extension passes), translates HTTP <-> core, and nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import orjson
from fastapi import Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST

from core import (
    ChatMessage,
    ChatStream,
    Credentials,
    Gateway,
    GatewayError,
    InvalidRequest,
)

from ._problems import problem, problem_for, status_for
from ._usage import usage_format, usage_period, usage_response
from ._wire import EncodedResponse, encoded, headers_of, query_of, read_body

log = logging.getLogger("http_api")

GatewayProvider = Callable[[], Awaitable[Gateway]]
JSON_TYPES = ("application/json", "text/json")
ASCII_INTEGER = re.compile(r"[+-]?[0-9]{1,19}", re.ASCII)
_TEXT_PLAIN = (b"content-type", b"text/plain; charset=utf-8")
_REPORTED, _ESTIMATED = ((b"x-usage-source", source) for source in (b"reported", b"estimated"))


class StreamAborted(Exception):
    """Raised to abort a JSON-array stream whose upstream failed after the 200 was sent.

    The failure is already logged as one warning line; the local server drops the ASGI
    server's traceback for it (``quiet_stream_aborts``).
    """


def quiet_stream_aborts(record: logging.LogRecord) -> bool:
    """A logging filter: False for the ASGI server's report of a :class:`StreamAborted`."""
    return not (record.exc_info and isinstance(record.exc_info[1], StreamAborted))


class RestHandlers:
    """The REST contract of design.md over one gateway (built lazily by ``provider``)."""

    def __init__(self, provider: GatewayProvider) -> None:
        self._provider = provider

    async def echo(self, request: Request) -> Response:
        async def answer(gateway: Gateway) -> Response:
            tenant = await gateway.authenticate(credentials_of(request))
            return PlainTextResponse(gateway.echo(tenant, _int32(request.query_params.get("value"))))

        return await self._answer("echo", request, answer)

    async def chat(self, request: Request) -> Response:
        async def answer(gateway: Gateway) -> Response:
            tenant, messages = await self._chat_input(request, gateway)
            completion = await gateway.chat(tenant, messages)
            usage = completion.usage
            headers = [
                _TEXT_PLAIN,
                (b"x-gateway-instance", completion.instance.encode("latin-1")),
                (b"x-prompt-tokens", b"%d" % usage.prompt_tokens),
                (b"x-completion-tokens", b"%d" % usage.completion_tokens),
                (b"x-total-tokens", b"%d" % usage.total_tokens),
                _REPORTED if completion.usage_reported else _ESTIMATED,
            ]
            if completion.budget is not None:
                headers += encoded(completion.budget.headers())
            return EncodedResponse(completion.text.encode(), 200, headers)

        return await self._answer("chat", request, answer)

    async def stream(self, request: Request) -> Response:
        gateway = await self._provider()
        started = time.perf_counter()
        try:
            tenant, messages = await self._chat_input(request, gateway)
            stream = await gateway.open_stream(tenant, messages)
        except GatewayError as exc:
            gateway.observe_request("stream", status_for(exc), time.perf_counter() - started)
            return problem_for(exc, instance=request.url.path)
        sse = "text/event-stream" in headers_of(request).get(b"accept", "")
        body = _sse(stream) if sse else _json_array(stream)
        return StreamingResponse(
            _observed(body, stream, gateway, started, sse=sse),
            media_type="text/event-stream" if sse else "application/json; charset=utf-8",
            headers={"X-Gateway-Instance": stream.instance, "Cache-Control": "no-cache",
                     "X-Accel-Buffering": "no", **dict(stream.budget.headers() if stream.budget else ())},
        )

    async def metrics(self, request: Request) -> Response:
        gateway = await self._provider()
        exposition = gateway.metrics_exposition()
        if exposition is None:
            return problem(404, "Not found", "metrics are disabled (Prometheus:Enabled is false)")
        try:
            gateway.authorize_metrics(request.headers.get("authorization"))
        except GatewayError as exc:
            return problem_for(exc, instance=request.url.path)
        return Response(exposition, media_type=CONTENT_TYPE_LATEST)

    async def usage(self, request: Request) -> Response:
        """``GET /admin/usage``: ledger lines as JSON or CSV."""

        async def answer(gateway: Gateway) -> Response:
            start, end, group_by = usage_period(request, datetime.now(UTC))
            fmt = usage_format(request)
            lines = await gateway.usage(credentials_of(request), start, end, "hour" if group_by == "hour" else "day")
            return usage_response(lines, fmt, start, end, group_by)

        return await self._answer("usage", request, answer)

    async def healthz(self, request: Request) -> Response:
        await self._provider()
        return PlainTextResponse("ok")

    async def _answer(
        self, route: str, request: Request, answer: Callable[[Gateway], Awaitable[Response]]
    ) -> Response:
        """``answer``'s response, or the problem for its gateway error; counted and timed either way."""
        gateway = await self._provider()
        started = time.perf_counter()
        try:
            response = await answer(gateway)
        except GatewayError as exc:
            response = problem_for(exc, instance=request.url.path)
        gateway.observe_request(route, response.status_code, time.perf_counter() - started)
        return response

    async def _chat_input(
        self, request: Request, gateway: Gateway
    ) -> tuple[str, tuple[ChatMessage, ...]]:
        tenant = await gateway.authenticate(credentials_of(request))
        content_type = headers_of(request).get(b"content-type", "application/json").split(";")[0]
        if content_type.strip().lower() not in JSON_TYPES and not content_type.endswith("+json"):
            raise InvalidRequest(
                f"the body must be JSON (Content-Type: application/json), not {content_type[:60]!r}"
            )
        body = await read_body(request, gateway.max_body_bytes,
                               empty="the body is empty; send a JSON array of messages")
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
        return tenant, gateway.conversation(raw)


def _int32(raw: str | None) -> int:
    if raw is None:
        raise InvalidRequest("the 'value' query parameter is missing; pass ?value=<integer>")
    if not ASCII_INTEGER.fullmatch(raw.strip(" \t")):  # int() would also take '1_000' and '١٢'
        raise InvalidRequest(f"'value' must be an integer (ASCII digits 0-9, optional sign), got {raw[:40]!r}")
    value = int(raw.strip(" \t"))
    if not -(2**31) <= value < 2**31:
        raise InvalidRequest("'value' must fit in a 32-bit signed integer")
    return value


def credentials_of(request: Request) -> Credentials:
    """The caller's credentials and claimed tenant, as plain values for ``Gateway.authenticate``."""
    found = headers_of(request)
    return Credentials(
        authorization=found.get(b"authorization"),
        api_key=found.get(b"api-key"),
        tenant_query=query_of(request).get("tenant"),
        tenant_header=found.get(b"x-tenant"),
    )


async def _json_array(stream: ChatStream) -> AsyncIterator[bytes]:
    """``["Hel","lo"]`` written element by element (ASP.NET's IAsyncEnumerable<string> format)."""
    yield b"["
    first = True
    async for delta in stream:
        yield (b"" if first else b",") + orjson.dumps(delta)
        first = False
    yield b"]"


async def _sse(stream: ChatStream) -> AsyncIterator[bytes]:
    async for delta in stream:
        yield b"data: " + orjson.dumps({"delta": delta}) + b"\n\n"
    completion = stream.completion
    if completion is not None:
        usage = {"prompt_tokens": completion.usage.prompt_tokens,
                 "completion_tokens": completion.usage.completion_tokens,
                 "total_tokens": completion.usage.total_tokens, "instance": completion.instance,
                 "usage_source": "reported" if completion.usage_reported else "estimated"}
        yield b"event: usage\ndata: " + orjson.dumps(usage) + b"\n\n"
    yield b"data: [DONE]\n\n"


async def _observed(
    body: AsyncIterator[bytes], stream: ChatStream, gateway: Gateway, started: float, *, sse: bool
) -> AsyncIterator[bytes]:
    """Close the upstream however the response ends (done, error, client gone) and record it.

    A failure after the 200 was sent ends SSE with an ``event: error``; the JSON array cannot
    carry one, so its connection is aborted and the client sees an incomplete body.
    """
    status = "200"
    try:
        async for part in body:
            yield part
    except GatewayError as exc:
        status = str(status_for(exc))
        log.warning("stream from %s ended early: %s", stream.instance, exc.detail)
        if not sse:
            raise StreamAborted(exc.detail) from None
        problem = {"title": exc.title, "status": status_for(exc), "detail": exc.detail}
        yield b"event: error\ndata: " + orjson.dumps(problem) + b"\n\n"
    except (GeneratorExit, asyncio.CancelledError):
        status = "499"  # the client went away mid-stream (counted; the tokens are still billed)
        raise
    finally:
        await stream.aclose()
        gateway.observe_request("stream", status, time.perf_counter() - started)
