"""The SERVER span of a hot route (http_api/_hot.py), made directly rather than by FastAPI's telemetry.

FastAPI's native telemetry (``fastapi.telemetry._asgi.NativeTelemetry``) makes the request span of
every other route; wrapping the hot dispatch in it costs ~0.15 ms a request (its metrics and logs
plumbing, per-request closures and parsing), about as much as the gateway's own work on a chat. This
makes the same span for the hot routes only: name ``POST <route template>``, kind SERVER, in the
caller's ``traceparent``, FastAPI's attributes (``url.scheme``, ``http.request.method``,
``network.protocol.version``, ``server.address``/``port`` from ``Host``, ``url.path``, ``url.query``
with the same redaction, ``http.route``, ``http.response.status_code``, ``error.type``) and its
error rule (an exception, a client gone before the end of the answer, or a status >= 500). The
span comes from ``core.own_tracer`` (no SDK span object with the span pipe). Per request: one pass
over the headers (the caller's trace context, ``Host``, and the handlers' headers for
``_wire.headers_of``), start attributes kept by (route, Host, path, query...), no wrapper around
``send``/``receive`` (the hot dispatch reports the status and whether the client stayed). Used
only while FastAPI's telemetry would trace nothing but spans (its metrics and logs off, as
http_api/app.py sets them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import __version__ as fastapi_version
from fastapi.telemetry._api import TelemetryConfig, _exception_type
from fastapi.telemetry._asgi import _HEADERS_GETTER, _SCHEMA_URL, _SENSITIVE_QUERY_PARAMETERS, _server_attributes
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, StatusCode
from starlette.datastructures import Headers

from core import own_tracer
from core.telemetry import ASK, attach_context, detach_context, parent_context, remote_parent, with_span

from ._wire import HEADERS_KEY, READ_HEADERS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Served = Callable[[Scope, Receive, Send], Awaitable[bool]]  # False: the client hung up before the end
STATUS_KEY = "gateway.status"  # the scope's key for the answer's status, set by the app once known
_CACHE = 256  # distinct (route, Host, path, query...) remembered (then forgotten all at once)
_EMPTY = Context()


def spans_only(config: TelemetryConfig) -> bool:
    """FastAPI's telemetry, as configured, makes request spans and nothing else."""
    return not config.get("metrics", True) and not config.get("logs", True) and config.get("tracer_provider") is None


class RequestSpans:
    """Runs a hot route's app inside its request span."""

    def __init__(self) -> None:
        self._tracer: trace.Tracer | None = None
        self._direct: Any = None  # the tracer's start_under (core/telemetry/_pipe_span.py), when it has one
        self._starts: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}

    async def __call__(self, app: Served, route: str, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = self._tracer
        if tracer is None:  # the provider is installed before the first request, not before this object
            tracer = self._tracer = own_tracer("fastapi", fastapi_version, _SCHEMA_URL)
            self._direct = getattr(tracer, "start_under", None)
        traceparent: str | None = None
        states: list[str] | None = None
        has_baggage = False
        host: bytes | None = None
        found: dict[bytes, str] = {}  # the handlers' headers (_wire.headers_of), from the same pass
        for name, value in scope["headers"]:
            if name in READ_HEADERS:
                if name not in found:
                    found[name] = value.decode("latin-1")
            elif name == b"traceparent":
                if traceparent is None:
                    traceparent = value.decode("latin-1")
            elif name == b"tracestate":
                (states := states or []).append(value.decode("latin-1"))
            elif name == b"baggage":
                has_baggage = True
            elif name == b"host" and host is None:
                host = value
        scope[HEADERS_KEY] = found
        key = (route, scope["method"], scope.get("http_version"), scope.get("scheme", "http"), host,
               scope.get("server") if host is None else None, scope["path"], scope.get("query_string") or b"")
        start = self._starts.get(key)
        if start is None:
            start = self._start(key)
        name, attributes = start
        parent = remote_parent(traceparent, states, has_baggage)
        span: trace.Span
        if parent is not ASK and self._direct is not None:
            span = self._direct(parent, name, SpanKind.SERVER, {}, attributes)  # the cached start: shared
            within = with_span(span, _EMPTY)
        else:
            extracted = (propagate.extract(Headers(scope=scope), getter=_HEADERS_GETTER) if parent is ASK
                         else parent_context(parent))
            span = tracer.start_span(name, context=extracted, kind=SpanKind.SERVER, attributes=attributes)
            within = with_span(span, extracted)
        token = attach_context(within)
        failure: BaseException | None = None
        try:
            if not await app(scope, receive, send):
                failure = ConnectionError("Client disconnected")
        except BaseException as exc:
            failure = exc
            raise
        finally:
            detach_context(token)
            status: int | None = scope.get(STATUS_KEY)
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if failure is not None or status is None or status >= 500:
                span.set_attribute("error.type", _exception_type(failure) if failure else
                                   str(status or "incomplete_response"))
                span.set_status(StatusCode.ERROR)
            span.end()

    def _start(self, key: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
        """A span's name and start attributes for (route, method, HTTP version, scheme, Host, server,
        path, query), as FastAPI's telemetry makes them; kept for the next request with the same."""
        route, method, http_version, scheme, host, server, path, query = key
        attributes: dict[str, Any] = {"url.scheme": scheme, "http.request.method": method}
        if http_version:
            attributes["network.protocol.version"] = http_version
        attributes["http.route"] = route
        origin: dict[str, Any] = {"scheme": scheme, "server": server,
                                  "headers": [(b"host", host)] if host is not None else []}
        attributes.update(_server_attributes(origin))
        attributes["url.path"] = path
        if query:
            attributes["url.query"] = _redacted(query)
        if len(self._starts) >= _CACHE:
            self._starts.clear()
        start = self._starts[key] = (f"{method} {route}", attributes)
        return start


def _redacted(query: bytes) -> str:
    """``url.query`` as FastAPI writes it (signature parameters redacted)."""
    from urllib.parse import parse_qsl, urlencode

    return urlencode([(key, "REDACTED" if key in _SENSITIVE_QUERY_PARAMETERS else value)
                      for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True)])
