"""The SERVER span of a hot route (http_api/_hot.py), made directly rather than by FastAPI's telemetry.

FastAPI's native telemetry (``fastapi.telemetry._asgi.NativeTelemetry``) makes the request span of
every other route; wrapping the hot dispatch in it costs ~0.15 ms a request (its metrics and logs
plumbing, per-request closures and parsing), about as much as the gateway's own work on a chat. This
makes the same span for the hot routes only: name ``POST <route template>``, kind SERVER, in the
caller's ``traceparent``, FastAPI's attributes (``url.scheme``, ``http.request.method``,
``network.protocol.version``, ``server.address``/``port`` from ``Host``, ``url.path``, ``url.query``
with the same redaction, ``http.route``, ``http.response.status_code``, ``error.type``) and its
error rule (an exception, no complete response, or a status >= 500). The span comes from
``core.own_tracer`` (no SDK span object with the span pipe). Used only while FastAPI's telemetry
would trace nothing but spans (its metrics and logs off, as http_api/app.py sets them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import __version__ as fastapi_version
from fastapi.telemetry._api import TelemetryConfig, _exception_type
from fastapi.telemetry._asgi import _HEADERS_GETTER, _SCHEMA_URL, _SENSITIVE_QUERY_PARAMETERS, _server_attributes
from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, StatusCode
from starlette.datastructures import Headers

from core import extract_trace_context, own_tracer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
_CACHE = 256  # distinct Host values / query strings remembered (then forgotten all at once)


def spans_only(config: TelemetryConfig) -> bool:
    """FastAPI's telemetry, as configured, makes request spans and nothing else."""
    return not config.get("metrics", True) and not config.get("logs", True) and config.get("tracer_provider") is None


class RequestSpans:
    """Runs a hot route's app inside its request span."""

    def __init__(self) -> None:
        self._tracer: trace.Tracer | None = None
        self._servers: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._queries: dict[bytes, str] = {}

    async def __call__(self, app: App, route: str, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = self._tracer
        if tracer is None:  # the provider is installed before the first request, not before this object
            tracer = self._tracer = own_tracer("fastapi", fastapi_version, _SCHEMA_URL)
        headers = Headers(scope=scope)
        parent = _parent(scope)
        if parent is None:
            parent = propagate.extract(headers, getter=_HEADERS_GETTER)
        method = scope["method"]
        attributes: dict[str, Any] = {"url.scheme": scope.get("scheme", "http"), "http.request.method": method}
        if scope.get("http_version"):
            attributes["network.protocol.version"] = scope["http_version"]
        attributes["http.route"] = route
        span = tracer.start_span(f"{method} {route}", context=parent, kind=SpanKind.SERVER,
                                 attributes={**attributes, **self._server(scope, headers), **self._url(scope)})
        status: int | None = None
        complete = disconnected = False

        async def sent(message: Message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True

        async def received() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
            return message

        token = context.attach(trace.set_span_in_context(span, parent))
        failure: BaseException | None = None
        try:
            await app(scope, received, sent)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            context.detach(token)
            if failure is None and not complete:
                failure = ConnectionError("Client disconnected") if disconnected else RuntimeError(
                    "Incomplete ASGI response")
            if status is not None:
                attributes["http.response.status_code"] = status
            failed = failure is not None or status is None or status >= 500
            if failed:
                attributes["error.type"] = _exception_type(failure) if failure else str(status or "incomplete_response")
            span.set_attributes(attributes)
            if failed:
                span.set_status(StatusCode.ERROR)
            span.end()

    def _server(self, scope: Scope, headers: Headers) -> dict[str, Any]:
        host = headers.get("host")
        key = (host, scope.get("scheme"), None if host is not None else scope.get("server"))
        found = self._servers.get(key)
        if found is None:
            if len(self._servers) >= _CACHE:
                self._servers.clear()
            found = self._servers[key] = _server_attributes(scope)
        return found

    def _url(self, scope: Scope) -> dict[str, Any]:
        query: bytes = scope.get("query_string") or b""
        if not query:
            return {"url.path": scope["path"]}
        text = self._queries.get(query)
        if text is None:
            if len(self._queries) >= _CACHE:
                self._queries.clear()
            text = self._queries[query] = _redacted(query)
        return {"url.path": scope["path"], "url.query": text}


def _parent(scope: Scope) -> Context | None:
    """The caller's trace context read directly (``core.extract_trace_context``: what
    ``propagate.extract`` makes of the headers, or None when it must be asked itself)."""
    traceparent: str | None = None
    states: list[str] | None = None
    has_baggage = False
    for name, value in scope["headers"]:
        if name == b"traceparent":
            if traceparent is None:
                traceparent = value.decode("latin-1")
        elif name == b"tracestate":
            (states := states or []).append(value.decode("latin-1"))
        elif name == b"baggage":
            has_baggage = True
    return extract_trace_context(traceparent, states, has_baggage)


def _redacted(query: bytes) -> str:
    """``url.query`` as FastAPI writes it (signature parameters redacted)."""
    from urllib.parse import parse_qsl, urlencode

    return urlencode([(key, "REDACTED" if key in _SENSITIVE_QUERY_PARAMETERS else value)
                      for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True)])
