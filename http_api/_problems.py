"""The REST host's one table from gateway errors to HTTP responses (RFC 9457 problem details)."""

from __future__ import annotations

import math

import orjson
from fastapi import Response

from core import (
    AuthUnavailable,
    ConfigurationError,
    Forbidden,
    GatewayError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

PROBLEM_TYPE = "application/problem+json"


class ClientClosedRequest(GatewayError):
    """The client hung up before its request was read (counted as 499, nginx's code)."""

    title = "Client closed request"


class RequestTimeout(GatewayError):
    """The local server's body deadline passed (``RestHost:BodyTimeoutSeconds``)."""

    title = "Request timeout"


# Most specific first: the first matching class decides the status.
STATUS: tuple[tuple[type[GatewayError], int], ...] = (
    (ClientClosedRequest, 499),
    (RequestTimeout, 408),
    (PayloadTooLarge, 413),
    (NotFound, 404),
    (InvalidRequest, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (AuthUnavailable, 503),
    (RateLimited, 429),
    (UpstreamTimeout, 504),
    (UpstreamUnavailable, 503),
    (UpstreamError, 502),
    (ConfigurationError, 503),
)


def status_for(error: GatewayError) -> int:
    return next((status for cls, status in STATUS if isinstance(error, cls)), 500)


def problem(
    status: int, title: str, detail: str, *, instance: str = "", headers: dict[str, str] | None = None
) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_TYPE, headers=headers)


def problem_for(error: GatewayError, *, instance: str = "") -> Response:
    status = status_for(error)
    headers: dict[str, str] = {}
    if isinstance(error, Unauthenticated):  # RFC 6750; the detail says what was wrong
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    if error.budget is not None:  # a limited tenant: OpenAI's x-ratelimit-* headers
        headers.update(error.budget.headers())
    return problem(status, error.title, error.detail, instance=instance, headers=headers)
