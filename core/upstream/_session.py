"""What every path to Azure OpenAI shares: one aiohttp session per gateway, each instance's credential
header and timeouts prepared once, and aiohttp's exceptions and Azure's statuses translated into the
gateway's tree (``core._errors``), the same for the gateway's own routes (``_chat``) and the
compatible API (``_relay``):

    429                    -> RateLimited (retry-after-ms, Retry-After seconds or date, x-ratelimit-reset-*)
    401 / 403              -> UpstreamMisconfigured naming ApiKey (the gateway's key or Entra role)
    503                    -> UpstreamUnavailable;  any other failure status -> UpstreamError
    refused / no connect   -> UpstreamUnavailable naming Endpoint;  read timeout -> UpstreamTimeout
    no data mid-stream     -> UpstreamTimeout naming TimeoutSeconds;  dropped -> UpstreamUnavailable

404 and 400 depend on the path (a deployment the caller chose or the instance's own; the caller's
body or the gateway's parameters): each adapter decides those. No message carries a key or token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
from yarl import URL

from .._errors import (
    GatewayError,
    RateLimited,
    UpstreamError,
    UpstreamMisconfigured,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from .._values import Usage
from ..config import ServiceSettings
from ..telemetry import inject_trace_context, tracing_active
from ._cooldown import cooldown_seconds
from ._port import TokenProvider

COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"  # Entra tokens for Azure OpenAI
MAX_ERROR_BODY = 64 * 1024


class SharedSession:
    """One aiohttp session for every instance of a gateway, opened on first use (inside the loop)."""

    def __init__(self, *, connection_limit: int = 512) -> None:
        self._limit = connection_limit
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, raise_for_status=False)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class Instance:
    """One instance as every request to it starts: ``Type: azure`` sends its api-key, ``azuread`` an
    Entra bearer from ``token_provider`` (cached by azure-identity); timeouts from ``TimeoutSeconds``
    (a whole answer within it; a stream with no data for that long has stalled)."""

    def __init__(self, name: str, settings: ServiceSettings, session: SharedSession,
                 token_provider: TokenProvider | None) -> None:
        self.name = name
        self.where = f"Azure OpenAI instance '{name}'"
        self.key = f"AzureOpenAI:Services:{name}"
        self.session = session
        self._traced = tracing_active()  # decided when the gateway is built, as its spans are (core._build)
        self._tokens = token_provider if settings.type == "azuread" else None
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._tokens is None:
            self._headers["api-key"] = settings.api_key.get_secret_value()
        self.idle_seconds = seconds = settings.timeout_seconds
        self.timeout = aiohttp.ClientTimeout(total=seconds, sock_connect=min(10.0, seconds))
        self.stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(10.0, seconds), sock_read=seconds)

    async def post(self, url: URL, body: bytes, limits: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        """One attempt, whatever the status (the gateway's failover, ``core._failover``, owns retries)."""
        headers = self._headers
        if self._tokens is not None:
            headers = {**headers, "Authorization": f"Bearer {await self._tokens()}"}
        if self._traced:  # the caller's trace goes on to Azure OpenAI (W3C traceparent)
            headers = inject_trace_context(dict(headers))
        try:
            return await self.session.get().post(url, data=body, headers=headers, timeout=limits)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self.connection_error(exc) from None

    async def read(self, response: aiohttp.ClientResponse, *, limit: int | None = None) -> bytes:
        """The body (a failure's: its first ``limit`` bytes), the connection released; aiohttp's failures
        translated."""
        try:
            return await (response.read() if limit is None else response.content.read(limit))
        except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
            raise self.connection_error(exc) from None
        finally:
            response.release()

    def connection_error(self, exc: BaseException) -> GatewayError:
        """aiohttp's failure before or while reading an answer (a timeout is never failed over)."""
        if isinstance(exc, aiohttp.ConnectionTimeoutError | aiohttp.ClientConnectorError):
            return UpstreamUnavailable(f"{self.where} is unreachable (check {self.key}:Endpoint)")
        if isinstance(exc, TimeoutError):
            return UpstreamTimeout(f"{self.where} did not answer in time ({self.key}:TimeoutSeconds)")
        return UpstreamUnavailable(f"{self.where} dropped the connection ({type(exc).__name__})")

    def stream_error(self, exc: BaseException) -> GatewayError:
        """aiohttp's failure while a stream was being read."""
        if isinstance(exc, TimeoutError):  # aiohttp's sock_read timeout is a ClientError too: first
            return UpstreamTimeout(f"{self.where} stalled: no data for {self.idle_seconds:g} s "
                                   f"({self.key}:TimeoutSeconds)")
        return UpstreamUnavailable(f"{self.where} dropped the stream ({type(exc).__name__})")

    def status_error(self, status: int, headers: Mapping[str, str]) -> GatewayError:
        """A failure status other than 400 and 404 (see the module's table)."""
        if status == 429:
            return RateLimited(f"{self.where} is rate limited; retry later", retry_after_seconds(headers))
        if status in (401, 403):
            return UpstreamMisconfigured(
                f"{self.where} rejected the gateway's credentials ({status}); check {self.key}:ApiKey "
                "(Type azure) or the identity's 'Cognitive Services OpenAI User' role (Type azuread)",
                instance=self.name, setting=f"{self.key}:ApiKey")
        if status == 503:
            return UpstreamUnavailable(f"{self.where} is unavailable (503)", retry_after_seconds(headers))
        return UpstreamError(f"{self.where} failed with status {status}")


def end_stream(response: aiohttp.ClientResponse, *, read_to_the_end: bool) -> None:
    """Back to the pool when read to the end; else the connection is closed, which stops Azure
    generating a completion nobody reads."""
    if read_to_the_end:
        response.release()
    else:
        response.close()


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """retry-after-ms, Retry-After (seconds or HTTP date), else x-ratelimit-reset-* (one parser for every path)."""
    return cooldown_seconds(headers.get)


def usage_of(value: object) -> Usage | None:
    """Chat / embeddings usage (prompt_tokens, completion_tokens) or the Responses API's (input, output)."""
    if not isinstance(value, dict):
        return None
    for prompt_key, completion_key in (("prompt_tokens", "completion_tokens"), ("input_tokens", "output_tokens")):
        if isinstance(value.get(prompt_key), int):
            completion = value.get(completion_key)
            return Usage(value[prompt_key], completion if isinstance(completion, int) else 0)
    return None


def loads_object(raw: bytes) -> dict[str, Any] | None:
    """A JSON object, or None when ``raw`` is not one."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
