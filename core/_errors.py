"""The gateway's exception tree.

Every failure a host can see is one of these; foreign exceptions (openai, azure, httpx, ...)
are translated at the seam that calls the foreign library. Each host keeps one table from
these classes to HTTP status / gRPC status code.

    GatewayError                     detail: str (safe to show a caller; never a secret)
    ├── ConfigurationError           invalid settings; names the key             -> 503 / UNAVAILABLE
    ├── InvalidRequest               the caller's input is wrong                 -> 400 / INVALID_ARGUMENT
    │   ├── PayloadTooLarge          body over the configured limit              -> 413 / INVALID_ARGUMENT
    │   └── NotFound                 no such deployment (compatible API)         -> 404 / INVALID_ARGUMENT
    ├── Unauthenticated              missing or invalid credentials              -> 401 / UNAUTHENTICATED
    ├── Forbidden                    authenticated, but names another tenant     -> 403 / PERMISSION_DENIED
    ├── AuthUnavailable              the issuer's signing keys cannot be fetched -> 503 / UNAVAILABLE
    ├── RateLimited                  a limit stops the call; retry_after seconds -> 429 / RESOURCE_EXHAUSTED
    └── UpstreamError                Azure OpenAI failed                          -> 502 / UNAVAILABLE
        ├── UpstreamMisconfigured    the gateway's settings for an instance are wrong (names the key)
        ├── UpstreamUnavailable      no instance reachable or all cooling down   -> 503 / UNAVAILABLE
        └── UpstreamTimeout          the upstream did not answer in time          -> 504 / DEADLINE_EXCEEDED

An error raised from an upstream's own answer (429, 5xx) carries it in ``upstream_response`` so the
compatible API can pass Azure's status and body through when no other instance could serve.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._values import Budget


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """An upstream's error answer as it came: status, the headers worth passing on, the body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class GatewayError(Exception):
    """Base class. ``detail`` is a sentence a person can act on.

    ``retry_after`` is the seconds after which the same call may succeed, when that is known
    (rate limits, cooling instances); hosts send it as ``Retry-After`` / ``retry-after-ms``.
    """

    title = "Gateway error"
    retry_after: float | None = None
    # The remaining budget of a limited tenant, set by the gateway on errors of its requests so
    # that hosts send the x-ratelimit-* headers with every answer, refusals included.
    budget: Budget | None = None
    upstream_response: UpstreamResponse | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ConfigurationError(GatewayError):
    title = "Invalid configuration"

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


class InvalidRequest(GatewayError):
    title = "Invalid request"


class PayloadTooLarge(InvalidRequest):
    title = "Request body too large"


class NotFound(InvalidRequest):
    title = "Not found"


class Unauthenticated(GatewayError):
    """Hosts answer it with ``WWW-Authenticate: Bearer error="invalid_token"`` (REST)."""

    title = "Unauthenticated"


class Forbidden(GatewayError):
    title = "Forbidden"


class AuthUnavailable(GatewayError):
    """Credentials cannot be checked now (JWKS unreachable): never an "allow", never a 500."""

    title = "Identity provider unavailable"

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class RateLimited(GatewayError):
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: float | None) -> None:
        super().__init__(detail)
        self.retry_after = None if retry_after is None else max(0.0, retry_after)


class UpstreamError(GatewayError):
    title = "Upstream error"


class UpstreamMisconfigured(UpstreamError):
    """An instance refuses the gateway's own settings: a key, a role, a deployment, an option.

    ``setting`` is the configuration key to fix; ``instance_fault`` is False when the setting is
    shared by every instance (``ChatCompletionsOptions``), so the instance itself stays in rotation.
    """

    title = "Upstream misconfigured"

    def __init__(self, detail: str, *, instance: str, setting: str, instance_fault: bool = True) -> None:
        super().__init__(detail)
        self.instance = instance
        self.setting = setting
        self.instance_fault = instance_fault


class UpstreamUnavailable(UpstreamError):
    title = "Upstream unavailable"

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = None if retry_after is None else max(0.0, retry_after)


class UpstreamTimeout(UpstreamError):
    title = "Upstream timeout"
