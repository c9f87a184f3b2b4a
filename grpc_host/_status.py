"""The one table from the gateway's errors to gRPC status codes (design.md).

    InvalidRequest (incl. PayloadTooLarge) -> INVALID_ARGUMENT
    Unauthenticated                        -> UNAUTHENTICATED
    Forbidden                              -> PERMISSION_DENIED
    AuthUnavailable                        -> UNAVAILABLE         (+ retry-after)
    RateLimited                            -> RESOURCE_EXHAUSTED  (+ retry-after trailers)
    UpstreamTimeout                        -> DEADLINE_EXCEEDED
    UpstreamUnavailable, UpstreamError     -> UNAVAILABLE         (+ retry-after when known)
    ConfigurationError                     -> UNAVAILABLE         (the details name the key)
    any other GatewayError                 -> INTERNAL

The details string is the error's ``detail``: written for a person, never a secret.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc

from core import (
    AuthUnavailable,
    ConfigurationError,
    Forbidden,
    GatewayError,
    InvalidRequest,
    RateLimited,
    Unauthenticated,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

# Most specific first: the first matching class wins.
_TABLE: tuple[tuple[type[GatewayError], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (Forbidden, grpc.StatusCode.PERMISSION_DENIED),
    (AuthUnavailable, grpc.StatusCode.UNAVAILABLE),
    (RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UpstreamTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (UpstreamUnavailable, grpc.StatusCode.UNAVAILABLE),
    (UpstreamError, grpc.StatusCode.UNAVAILABLE),
    (ConfigurationError, grpc.StatusCode.UNAVAILABLE),
)


@dataclass(frozen=True, slots=True)
class RpcFailure:
    code: grpc.StatusCode
    details: str
    trailers: tuple[tuple[str, str], ...]


def failure_for(error: GatewayError) -> RpcFailure:
    """The status, details and trailing metadata that tell a caller what went wrong."""
    code = next((c for cls, c in _TABLE if isinstance(error, cls)), grpc.StatusCode.INTERNAL)
    retry_after = error.retry_after
    trailers: tuple[tuple[str, str], ...] = ()
    if retry_after is not None:
        # Same meaning as HTTP Retry-After (whole seconds) plus Azure's millisecond variant.
        trailers = (
            ("retry-after", str(math.ceil(retry_after))),
            ("retry-after-ms", str(math.ceil(retry_after * 1000))),
        )
    if error.budget is not None:  # a limited tenant: OpenAI's x-ratelimit-* names
        trailers += error.budget.headers()
    return RpcFailure(code, error.detail, trailers)
