"""A request read and an answer written with no more work than the hot path needs.

Starlette's ``Request.headers``, ``query_params`` and ``stream()`` and ``Response``'s header
building are general: every header wrapped, the query parsed per request, an async generator per
body, each answer header encoded one by one. The handlers read a handful of headers, one or two
query values and a small body, and answer with headers they know: here that is one pass over the
ASGI headers (kept in the scope), parsed query strings kept by their bytes (a few distinct ones
serve all requests), the body read straight from ``receive``, and answers built from encoded
headers. The types stay Starlette's, so the Functions app's handlers are the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl

from fastapi import Request, Response

from core import InvalidRequest, PayloadTooLarge

from ._problems import ClientClosedRequest

log = logging.getLogger("http_api")

READ_HEADERS = frozenset((b"authorization", b"api-key", b"x-tenant", b"content-type", b"content-length", b"accept"))
MAX_CACHED_QUERIES = 1024
HEADERS_KEY = "gateway.headers"  # the scope's key for them
_QUERIES: dict[bytes, dict[str, str]] = {}
_NO_QUERY: dict[str, str] = {}


def headers_of(request: Request) -> Mapping[bytes, str]:
    """The headers the handlers read (:data:`READ_HEADERS`; ASGI names are lower-case), the first of
    each name, decoded as Latin-1 as Starlette's are; one pass over the scope per request."""
    scope = request.scope
    found: dict[bytes, str] | None = scope.get(HEADERS_KEY)
    if found is None:
        found = {}
        for name, value in scope["headers"]:
            if name in READ_HEADERS and name not in found:
                found[name] = value.decode("latin-1")
        scope[HEADERS_KEY] = found
    return found


def query_of(request: Request) -> Mapping[str, str]:
    """The query string's values (the last of a repeated name, as ``request.query_params.get``).
    Do not modify: the parse is shared by every request with the same query string."""
    raw: bytes = request.scope.get("query_string", b"")
    if not raw:
        return _NO_QUERY
    parsed = _QUERIES.get(raw)
    if parsed is None:
        parsed = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
        if len(_QUERIES) < MAX_CACHED_QUERIES:  # bounded: beyond it, parsed each time
            _QUERIES[raw] = parsed
    return parsed


async def read_body(request: Request, limit: int, *, empty: str) -> bytes:
    """The whole body, at most ``limit`` bytes (``Gateway:MaxBodyBytes``); ``empty``: the message
    when there is none. A client that hangs up mid-body is :class:`ClientClosedRequest` (499)."""
    declared = headers_of(request).get(b"content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body has {declared} bytes; the limit is {limit} (Gateway:MaxBodyBytes)")
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            log.info("client hung up after %d bytes of the request body to %s", size, request.scope["path"])
            raise ClientClosedRequest("the client closed the connection before sending the whole body")
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the body is over {limit} bytes (Gateway:MaxBodyBytes)")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if not size:
        raise InvalidRequest(empty)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class EncodedResponse(Response):
    """A ``Response`` whose headers are given as ASGI pairs (lower-case names, encoded values);
    ``content-length`` is added. What Starlette's constructor does per header, done by the caller
    once (constant headers) or with the values it already has."""

    def __init__(self, body: bytes, status_code: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = [*headers, (b"content-length", str(len(body)).encode())]


def encoded(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """``(name, value)`` strings as ASGI header pairs."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
