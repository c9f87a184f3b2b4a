"""Azure OpenAI reached byte for byte on one shared aiohttp session: the compatible API's path.

No SDK objects per request: each instance prepares its credential header (``_session.Instance``)
and its URLs once, bodies go out and come back as bytes, and usage is read from the JSON or the SSE
events without building models. aiohttp's exceptions and Azure's statuses are translated as in
``_session``'s table, so the failover loop treats them as it treats the gateway's own routes; here:

    404                    -> UpstreamMisconfigured naming Deployments (that deployment, not the instance)
    other 4xx              -> returned as they are: the caller's request is wrong, no failover
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from urllib.parse import quote

import aiohttp
from yarl import URL

from .._errors import GatewayError, UpstreamMisconfigured, UpstreamResponse
from .._values import Usage
from ..config import ServiceSettings
from ._port import Operation, RelayReply, TokenProvider
from ._session import MAX_ERROR_BODY, Instance, SharedSession, end_stream, loads_object, usage_of

# Upstream headers a caller may see (everything else, e.g. cookies or Azure's internals, stays here).
PASSED_HEADERS = frozenset({
    "content-type", "x-request-id", "apim-request-id", "retry-after", "retry-after-ms",
    "openai-processing-ms", "openai-model", "x-ms-region", "x-ms-deployment-name",
})
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_BOUNDARY = re.compile(rb"\r?\n\r?\n")
MAX_CACHED_URLS = 256


class AiohttpRelay:
    """One instance, ``Type: azure`` (api-key) or ``azuread`` (Entra bearer from ``token_provider``)."""

    def __init__(
        self, name: str, settings: ServiceSettings, session: SharedSession,
        *, token_provider: TokenProvider | None = None,
    ) -> None:
        self.name = name
        self._settings = settings
        self._instance = Instance(name, settings, session, token_provider)
        self._base = settings.endpoint.rstrip("/") + "/openai/deployments/"
        self._responses = URL(settings.endpoint.rstrip("/") + "/openai/v1/responses", encoded=True)
        self._urls: dict[tuple[str, str, str], URL] = {}

    async def post(
        self, deployment: str, operation: Operation, body: bytes, *, api_version: str | None
    ) -> RelayReply:
        instance = self._instance
        response = await self._send(self._url(deployment, operation, api_version), body, instance.timeout)
        data = await instance.read(response)
        usage = json_usage(data) if response.status < 300 else None
        return RelayReply(response.status, passed_headers(response.headers), data, usage)

    async def open_stream(
        self, deployment: str, operation: Operation, body: bytes, *, api_version: str | None,
        keep_usage_event: bool,
    ) -> SseRelayStream:
        url = self._url(deployment, operation, api_version)
        response = await self._send(url, body, self._instance.stream_timeout)
        return SseRelayStream(self._instance, response, keep_usage_event=keep_usage_event)

    async def aclose(self) -> None:
        await self._instance.session.aclose()

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
        instance = self._instance
        response = await instance.post(url, body, limits)
        status = response.status
        if status < 400 or (status < 500 and status not in (401, 403, 404, 408, 429)):
            return response
        raise self._failure(status, response.headers, await instance.read(response, limit=MAX_ERROR_BODY))

    def _failure(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """The error, with Azure's answer kept for the caller unless it is about the gateway's credentials."""
        key = self._instance.key
        if status == 404:
            # One deployment missing on one instance: that deployment's setting, not the whole instance.
            return UpstreamMisconfigured(
                f"{self._instance.where} has no such deployment; check {key}:Deployment, {key}:Deployments "
                f"and {key}:Version", instance=self.name, setting=f"{key}:Deployments", instance_fault=False)
        error = self._instance.status_error(status, headers)
        if not isinstance(error, UpstreamMisconfigured):  # never shown: the caller's key was not the problem
            error.upstream_response = UpstreamResponse(status, passed_headers(headers), body)
        return error


class SseRelayStream:
    """The upstream's body cut at SSE event boundaries, relayed as it arrives.

    Usage is read from the one event that carries it (a regex gate, then orjson on that event
    only). With ``keep_usage_event`` false, that event (no choices, only usage: the one the gateway
    asked for on the caller's behalf) is left out of what the caller receives. A non-2xx answer
    (the caller's 4xx) is yielded whole.
    """

    def __init__(self, instance: Instance, response: aiohttp.ClientResponse, *, keep_usage_event: bool) -> None:
        self.status = response.status
        self.headers = passed_headers(response.headers)
        self.usage: Usage | None = None
        self._instance = instance
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
        except (aiohttp.ClientError, OSError) as exc:  # TimeoutError (no data for too long) is an OSError
            raise self._instance.stream_error(exc) from None
        self._complete = True
        if buffer:
            self._seen.append(buffer)
            yield buffer

    def texts(self) -> str:
        """The content deltas seen so far, joined (parsed only when no usage came)."""
        parts: list[str] = []
        for event in _BOUNDARY.split(b"".join(self._seen)):
            payload = _data(event)
            chunk = loads_object(payload) if payload is not None and payload.startswith(b"{") else None
            if chunk is None:
                continue
            if chunk.get("type") == "response.output_text.delta" and isinstance(chunk.get("delta"), str):
                parts.append(chunk["delta"])  # the Responses API
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                    parts.append(delta["content"])
        return "".join(parts)

    async def aclose(self) -> None:
        end_stream(self._response, read_to_the_end=self._complete)

    def _take_usage(self, ready: bytes) -> bytes:
        """Read the usage event(s) in ``ready``; only those events are looked at, never the others."""
        position = 0
        while (match := _USAGE.search(ready, position)) is not None:
            start = _event_start(ready, match.start())
            boundary = _BOUNDARY.search(ready, match.end())
            end = boundary.end() if boundary is not None else len(ready)
            payload = _data(ready[start:end])
            chunk = loads_object(payload) if payload is not None else None
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
    passed: list[tuple[str, str]] = []
    for name, value in headers.items():
        lower = name.lower()
        if lower in PASSED_HEADERS or lower.startswith("x-ratelimit-"):
            passed.append((name, value))
    return tuple(passed)


def json_usage(body: bytes) -> Usage | None:
    """The ``usage`` of a JSON answer, parsed from its own object (not the whole, maybe large, body)."""
    end = len(body)
    while (key := body.rfind(b'"usage"', 0, end)) >= 0:  # the last one, found from the end
        match = _USAGE.match(body, key)
        if match is not None:
            break
        end = key
    else:
        return None
    start = end = match.end() - 1
    for _ in range(4):  # the first "}" may close a nested *_tokens_details object
        end = body.find(b"}", end + 1 if end > start else start)
        if end < 0:
            return None
        found = loads_object(body[start:end + 1])
        if found is not None:
            return usage_of(found)
    parsed = loads_object(body)
    return usage_of(parsed.get("usage")) if parsed is not None else None


def _event_usage(chunk: dict[str, object]) -> Usage | None:
    """A chat chunk's ``usage``, or a Responses ``response.completed`` event's ``response.usage``."""
    response = chunk.get("response")
    return usage_of(chunk.get("usage")) or (usage_of(response.get("usage")) if isinstance(response, dict) else None)


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
