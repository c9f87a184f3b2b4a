"""Azure OpenAI reached byte for byte on one shared aiohttp session: the compatible API's path.

No SDK objects per request: each instance prepares its credential header and its URLs once,
bodies go out and come back as bytes, and usage is read from the JSON or the SSE events without
building models. aiohttp's exceptions and Azure's error statuses are translated here into the
gateway's tree, so the failover loop treats them as it treats the SDK path's:

    429                    -> RateLimited (retry-after-ms, Retry-After seconds or date, x-ratelimit-reset-*)
    503                    -> UpstreamUnavailable;  other 5xx, 408 -> UpstreamError
    401 / 403 / 404        -> UpstreamMisconfigured (the gateway's key, role or Deployments map is wrong)
    other 4xx              -> returned as they are: the caller's request is wrong, no failover
    refused / no connect   -> UpstreamUnavailable;  read timeout -> UpstreamTimeout
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncIterator, Mapping
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from .._errors import (
    GatewayError,
    RateLimited,
    UpstreamError,
    UpstreamMisconfigured,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from .._values import Usage
from ..config import ServiceSettings
from ..telemetry import inject_trace_context, tracing_active
from ._cooldown import cooldown_seconds
from ._port import Operation, RelayReply, TokenProvider

# Upstream headers a caller may see (everything else, e.g. cookies or Azure's internals, stays here).
PASSED_HEADERS = frozenset({
    "content-type", "x-request-id", "apim-request-id", "retry-after", "retry-after-ms",
    "openai-processing-ms", "openai-model", "x-ms-region", "x-ms-deployment-name",
})
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_BOUNDARY = re.compile(rb"\r?\n\r?\n")
MAX_CACHED_URLS = 256
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


class AiohttpRelay:
    """One instance, ``Type: azure`` (api-key) or ``azuread`` (Entra bearer from ``token_provider``)."""

    def __init__(
        self, name: str, settings: ServiceSettings, session: SharedSession,
        *, token_provider: TokenProvider | None = None,
    ) -> None:
        self.name = name
        self._settings = settings
        self._session = session
        self._tokens = token_provider if settings.type == "azuread" else None
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._tokens is None:
            self._headers["api-key"] = settings.api_key.get_secret_value()
        self._base = settings.endpoint.rstrip("/") + "/openai/deployments/"
        self._responses = URL(settings.endpoint.rstrip("/") + "/openai/v1/responses", encoded=True)
        self._urls: dict[tuple[str, str, str], URL] = {}
        seconds = settings.timeout_seconds
        self._timeout = aiohttp.ClientTimeout(total=seconds, sock_connect=min(10.0, seconds))
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(10.0, seconds),
                                                     sock_read=seconds)
        self._where = f"Azure OpenAI instance '{name}'"

    async def post(
        self, deployment: str, operation: Operation, body: bytes, *, api_version: str | None
    ) -> RelayReply:
        response = await self._send(self._url(deployment, operation, api_version), body, self._timeout)
        try:
            data = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._translate(exc) from None
        finally:
            response.release()
        usage = json_usage(data) if response.status < 300 else None
        return RelayReply(response.status, passed_headers(response.headers), data, usage)

    async def open_stream(
        self, deployment: str, operation: Operation, body: bytes, *, api_version: str | None,
        keep_usage_event: bool,
    ) -> SseRelayStream:
        url = self._url(deployment, operation, api_version)
        response = await self._send(url, body, self._stream_timeout)
        return SseRelayStream(self._where, response, keep_usage_event=keep_usage_event)

    async def aclose(self) -> None:
        await self._session.aclose()

    def _url(self, deployment: str, operation: Operation, api_version: str | None) -> URL:
        if operation == "responses":  # the v1 API: no api-version, the deployment is the body's model
            return self._responses
        version = api_version or self._settings.version
        key = (deployment, operation, version)
        url = self._urls.get(key)
        if url is None:
            url = URL(f"{self._base}{quote(deployment, safe='')}/{operation}?api-version={quote(version)}",
                      encoded=True)
            if len(self._urls) < MAX_CACHED_URLS:
                self._urls[key] = url
        return url

    async def _send(self, url: URL, body: bytes, limits: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        """The response (2xx, or a 4xx that is the caller's); one attempt: the gateway's failover
        (``core._failover``) owns retries, across instances."""
        try:
            headers = self._headers
            if self._tokens is not None:
                headers = {**headers, "Authorization": f"Bearer {await self._tokens()}"}
            if tracing_active():  # the caller's trace goes on to Azure OpenAI (W3C traceparent)
                headers = inject_trace_context(dict(headers))
            response = await self._session.get().post(url, data=body, headers=headers, timeout=limits)
            failure = await self._failure(response)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            failure = self._translate(exc)
        if failure is not None:
            raise failure
        return response

    async def _failure(self, response: aiohttp.ClientResponse) -> GatewayError | None:
        """None for 2xx and the caller's own 4xx; else the error (the body read and kept)."""
        status = response.status
        if status < 400 or (status < 500 and status not in (401, 403, 404, 408, 429)):
            return None
        try:
            body = await response.content.read(MAX_ERROR_BODY)
        finally:
            response.release()
        headers = passed_headers(response.headers)
        error: GatewayError
        key = f"AzureOpenAI:Services:{self.name}"
        if status == 429:
            error = RateLimited(f"{self._where} is rate limited; retry later", retry_after_seconds(response.headers))
        elif status in (401, 403):
            return UpstreamMisconfigured(
                f"{self._where} rejected the gateway's credentials ({status}); check {key}:ApiKey "
                "(Type azure) or the identity's 'Cognitive Services OpenAI User' role (Type azuread)",
                instance=self.name, setting=f"{key}:ApiKey")
        elif status == 404:
            # One deployment missing on one instance: that deployment's setting, not the whole instance.
            return UpstreamMisconfigured(
                f"{self._where} has no such deployment; check {key}:Deployment, {key}:Deployments and {key}:Version",
                instance=self.name, setting=f"{key}:Deployments", instance_fault=False)
        elif status == 503:
            error = UpstreamUnavailable(f"{self._where} is unavailable (503)", retry_after_seconds(response.headers))
        else:
            error = UpstreamError(f"{self._where} failed with status {status}")
        error.upstream_response = UpstreamResponse(status, headers, body)
        return error

    def _translate(self, exc: BaseException) -> GatewayError:
        if isinstance(exc, aiohttp.ConnectionTimeoutError | aiohttp.ClientConnectorError):
            return UpstreamUnavailable(f"{self._where} is unreachable")
        if isinstance(exc, TimeoutError):
            return UpstreamTimeout(f"{self._where} did not answer in time")
        return UpstreamUnavailable(f"{self._where} dropped the connection ({type(exc).__name__})")


class SseRelayStream:
    """The upstream's body cut at SSE event boundaries, relayed as it arrives.

    Usage is read from the one event that carries it (a regex gate, then orjson on that event
    only). With ``keep_usage_event`` false, that event (no choices, only usage: the one the gateway
    asked for on the caller's behalf) is left out of what the caller receives. A non-2xx answer
    (the caller's 4xx) is yielded whole.
    """

    def __init__(self, where: str, response: aiohttp.ClientResponse, *, keep_usage_event: bool) -> None:
        self.status = response.status
        self.headers = passed_headers(response.headers)
        self.usage: Usage | None = None
        self._where = where
        self._response = response
        self._keep = keep_usage_event
        self._seen: list[bytes] = []
        self._complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        buffer = b""
        try:
            async for chunk in self._response.content.iter_any():
                buffer = buffer + chunk if buffer else chunk
                end = _last_boundary(buffer)
                if end < 0 or self.status >= 300:
                    continue
                ready, buffer = buffer[:end], buffer[end:]
                self._seen.append(ready)
                if _USAGE.search(ready):
                    ready = self._take_usage(ready)
                if ready:
                    yield ready
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnavailable(f"{self._where} dropped the stream ({type(exc).__name__})") from None
        except TimeoutError:
            raise UpstreamTimeout(f"{self._where} stopped sending the stream") from None
        self._complete = True
        if buffer:
            self._seen.append(buffer)
            yield buffer

    def texts(self) -> str:
        """The content deltas seen so far, joined (parsed only when no usage came)."""
        parts: list[str] = []
        for event in _BOUNDARY.split(b"".join(self._seen)):
            payload = _data(event)
            if payload is None or not payload.startswith(b"{"):
                continue
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(chunk, dict):
                continue
            if chunk.get("type") == "response.output_text.delta" and isinstance(chunk.get("delta"), str):
                parts.append(chunk["delta"])  # the Responses API
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                    parts.append(delta["content"])
        return "".join(parts)

    async def aclose(self) -> None:
        """Back to the pool when read to the end; else the connection is closed, which stops Azure
        generating a completion nobody reads."""
        if self._complete:
            self._response.release()
        else:
            self._response.close()

    def _take_usage(self, ready: bytes) -> bytes:
        """Read the usage event(s) in ``ready``; only those events are looked at, never the others."""
        position = 0
        while (match := _USAGE.search(ready, position)) is not None:
            start = _event_start(ready, match.start())
            boundary = _BOUNDARY.search(ready, match.end())
            end = boundary.end() if boundary is not None else len(ready)
            payload = _data(ready[start:end])
            chunk = _loads(payload) if payload is not None else None
            usage = _event_usage(chunk) if chunk is not None else None
            if usage is not None and chunk is not None:
                self.usage = usage
                if not self._keep and not chunk.get("choices"):
                    ready = ready[:start] + ready[end:]
                    position = start
                    continue
            position = end
        return ready


def passed_headers(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in headers.items() if k.lower() in PASSED_HEADERS or
                 k.lower().startswith("x-ratelimit-"))


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """retry-after-ms, Retry-After (seconds or HTTP date), else x-ratelimit-reset-* (one parser for every path)."""
    return cooldown_seconds(headers.get)


def json_usage(body: bytes) -> Usage | None:
    """The ``usage`` of a JSON answer, parsed from its own object (not the whole, maybe large, body)."""
    match = next(iter(deque(_USAGE.finditer(body), maxlen=1)), None)  # the last one
    if match is None:
        return None
    start = end = match.end() - 1
    for _ in range(4):  # the first "}" may close a nested *_tokens_details object
        end = body.find(b"}", end + 1 if end > start else start)
        if end < 0:
            return None
        found = _loads(body[start:end + 1])
        if found is not None:
            return _usage(found)
    parsed = _loads(body)
    return _usage(parsed.get("usage")) if parsed is not None else None


def _usage(value: object) -> Usage | None:
    """Chat / embeddings usage (prompt_tokens, completion_tokens) or the Responses API's (input, output)."""
    if not isinstance(value, dict):
        return None
    for prompt_key, completion_key in (("prompt_tokens", "completion_tokens"), ("input_tokens", "output_tokens")):
        if isinstance(value.get(prompt_key), int):
            completion = value.get(completion_key)
            return Usage(value[prompt_key], completion if isinstance(completion, int) else 0)
    return None


def _event_usage(chunk: dict[str, object]) -> Usage | None:
    """A chat chunk's ``usage``, or a Responses ``response.completed`` event's ``response.usage``."""
    response = chunk.get("response")
    return _usage(chunk.get("usage")) or (_usage(response.get("usage")) if isinstance(response, dict) else None)


def _loads(raw: bytes) -> dict[str, object] | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _data(event: bytes) -> bytes | None:
    for line in event.splitlines():
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None


def _event_start(buffer: bytes, position: int) -> int:
    """Where the event holding ``position`` starts: just after the boundary before it (or 0)."""
    lf, crlf = buffer.rfind(b"\n\n", 0, position), buffer.rfind(b"\r\n\r\n", 0, position)
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def _last_boundary(buffer: bytes) -> int:
    lf, crlf = buffer.rfind(b"\n\n"), buffer.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else -1, crlf + 4 if crlf >= 0 else -1)
