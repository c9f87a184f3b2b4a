"""The hot routes' dispatch in front of FastAPI's machinery (docs/rest-server.md).

``POST`` to ``/openai/chat``, ``/openai/stream`` and the compatible API's routes goes straight to
the shared handlers (the very ones ``function_app.py`` registers): a dict or one regex instead of
FastAPI's router, dependency solving, exit stacks and exception middleware. Everything else (other
methods on these paths, docs, OpenAPI, admin, metrics, health, 404s) is FastAPI's, which also still
declares the hot routes, so the OpenAPI document lists them.

The handlers take a Starlette ``Request`` and return a ``Response`` either way, so answers, headers,
problem+json errors, body limits, streaming and metrics are the same code. With a tracer provider
installed, the dispatch runs in the same SERVER span FastAPI's telemetry makes for its routes
(http_api/_request_span.py: continuing the caller's ``traceparent``, named after the route, made
directly); without one, nothing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.telemetry._api import _route_selected

from ._compat import CompatHandlers
from ._handlers import RestHandlers
from ._request_span import STATUS_KEY, RequestSpans, spans_only

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Handler = Callable[[Request], Awaitable[Response]]

_BY_DEPLOYMENT = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|embeddings)$")


class HotRoutes:
    """Which handler serves a hot route, and serving it; :class:`http_api.app.GatewayApp` asks first."""

    def __init__(self, app: FastAPI, rest: RestHandlers, compat: CompatHandlers) -> None:
        self.exact: dict[str, tuple[Handler, str]] = {
            "/openai/chat": (rest.chat, "/openai/chat"),
            "/openai/stream": (rest.stream, "/openai/stream"),
            "/openai/v1/chat/completions": (compat.v1_chat, "/openai/v1/chat/completions"),
            "/openai/v1/embeddings": (compat.v1_embeddings, "/openai/v1/embeddings"),
            "/openai/v1/responses": (compat.responses, "/openai/v1/responses"),
            "/openai/responses": (compat.responses, "/openai/responses"),
        }
        self.by_deployment: dict[str, tuple[Handler, str]] = {
            "chat/completions": (compat.deployment_chat, "/openai/deployments/{deployment}/chat/completions"),
            "embeddings": (compat.deployment_embeddings, "/openai/deployments/{deployment}/embeddings"),
        }
        self.app = app
        self.telemetry = app._native_telemetry  # FastAPI's request spans, reused as they are
        self.traced: bool | None = None  # decided at the first request (the tracer provider is set by then)
        self.spans = RequestSpans() if spans_only(self.telemetry.config) else None  # the same spans, cheaper

    def match(self, scope: Scope) -> tuple[Handler, str] | None:
        """(handler, route template) for a hot ``POST``; None for everything FastAPI serves."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        path: str = scope["path"]
        hot = self.exact.get(path)
        if hot is None and path.startswith("/openai/deployments/"):
            found = _BY_DEPLOYMENT.match(path)
            if found is not None:
                hot = self.by_deployment[found.group(2)]
                scope["path_params"] = {"deployment": found.group(1)}
        return hot

    async def serve(self, hot: tuple[Handler, str], scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self.app
        handler, route = hot
        if self.traced is None:
            self.traced = self.telemetry.enabled()
        if not self.traced:
            await _serve(handler, scope, receive, send)
            return

        if self.spans is not None:
            await self.spans(partial(_serve, handler), route, scope, receive, send)
            return

        async def traced(scope: Scope, receive: Receive, send: Send) -> None:
            _route_selected(scope=scope, path=route)  # the span's name and http.route, as FastAPI's router sets them
            await _serve(handler, scope, receive, send)

        await self.telemetry(app=traced, scope=scope, receive=receive, send=send)


async def _serve(handler: Handler, scope: Scope, receive: Receive, send: Send) -> bool:
    """Serve the request; False when the client hung up before the end of a streamed answer. The
    answer's status is left in the scope (``STATUS_KEY``) as soon as it is known, for the request span."""
    response = await handler(Request(scope, receive))
    scope[STATUS_KEY] = response.status_code
    if isinstance(response, StreamingResponse) and response.background is None:
        return await _stream(response, receive, send)
    await response(scope, receive, send)
    return True


async def _stream(response: StreamingResponse, receive: Receive, send: Send) -> bool:
    """What ``StreamingResponse`` does under uvicorn (relay the body; a client that hangs up cancels
    it), with one plain watcher task instead of an anyio task group: a tenth of a stream's CPU.
    False when the client hung up first."""
    streaming = asyncio.current_task()
    assert streaming is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        streaming.cancel()  # lands where the stream waits (upstream, client): its generator sees it

    watcher = asyncio.create_task(watch())
    try:
        await response.stream_response(send)
    except asyncio.CancelledError:
        if not gone or streaming.uncancel() > 0:  # a cancellation from elsewhere (shutdown) goes on
            raise
    finally:
        watcher.cancel()
    return not gone
