"""The gateway's REST API through httpx (async)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from clients.cli._model import (
    DeltaSink,
    Message,
    Reply,
    RequestFailed,
    Usage,
    parse_int,
    usage_from,
)
from clients.cli._wire import JsonArrayDecoder, SseDecoder, WireError, delta_text, json_object

_MAX_DETAIL = 300


class RestClient:
    """`GatewayClient` over HTTP. One instance holds one connection pool; close it with `aclose`."""

    transport = "rest"

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 120.0,
        sse: bool = True,
        max_connections: int = 10,
    ) -> None:
        headers = {"User-Agent": "gateway-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._url = url.rstrip("/")
        self._sse = sse
        self._http = httpx.AsyncClient(
            base_url=self._url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def echo(self, tenant: str | None, value: int) -> Reply:
        params: dict[str, str] = {"value": str(value)}
        if tenant:
            params["tenant"] = tenant
        response = await self._send("GET", "/openai/echo", params=params)
        return Reply(response.text, str(response.status_code))

    async def chat(self, tenant: str | None, messages: list[Message]) -> Reply:
        response = await self._send("POST", "/openai/chat", params=_tenant(tenant), json=_body(messages))
        headers = response.headers
        usage = usage_from(
            parse_int(headers.get("x-prompt-tokens")),
            parse_int(headers.get("x-completion-tokens")),
            parse_int(headers.get("x-total-tokens")),
        )
        return Reply(response.text, str(response.status_code), headers.get("x-gateway-instance"), usage)

    async def stream(self, tenant: str | None, messages: list[Message], on_delta: DeltaSink) -> Reply:
        accept = "text/event-stream" if self._sse else "application/json"
        request = self._http.build_request(
            "POST", "/openai/stream", params=_tenant(tenant), json=_body(messages), headers={"Accept": accept}
        )
        try:
            response = await self._http.send(request, stream=True)
            try:
                if response.status_code >= 400:
                    await response.aread()
                    raise _failure(response)
                reader = _read_sse if self._sse else _read_json_array
                text, usage, instance = await reader(response, on_delta)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise _transport_failure(exc, self._url) from None
        instance = instance or response.headers.get("x-gateway-instance")
        return Reply(text, str(response.status_code), instance, usage)

    async def _send(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise _transport_failure(exc, self._url) from None
        if response.status_code >= 400:
            raise _failure(response)
        return response


def _tenant(tenant: str | None) -> dict[str, str]:
    return {"tenant": tenant} if tenant else {}


def _body(messages: list[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


async def _read_json_array(response: httpx.Response, on_delta: DeltaSink) -> tuple[str, Usage, str | None]:
    decoder = JsonArrayDecoder()
    parts: list[str] = []
    try:
        async for chunk in response.aiter_text():
            for item in decoder.feed(chunk):
                parts.append(item)
                on_delta(item)
    except WireError as exc:
        raise RequestFailed("protocol-error", str(exc)) from None
    if not decoder.closed:
        raise RequestFailed("protocol-error", "the stream ended before the closing ']' (cut off mid-answer)")
    return "".join(parts), Usage(), None


async def _read_sse(response: httpx.Response, on_delta: DeltaSink) -> tuple[str, Usage, str | None]:
    decoder = SseDecoder()
    parts: list[str] = []
    usage, instance = Usage(), None
    try:
        async for chunk in response.aiter_text():
            for event in decoder.feed(chunk):
                if event.event == "error":
                    raise _sse_error(event.data)
                if event.event == "usage":
                    usage, instance = _sse_usage(event.data)
                elif event.data.strip() == "[DONE]":
                    return "".join(parts), usage, instance
                elif event.event == "message":
                    parts.append(delta_text(event.data))
                    on_delta(parts[-1])
    except WireError as exc:
        raise RequestFailed("protocol-error", str(exc)) from None
    raise RequestFailed(
        "protocol-error", "the event stream ended without 'data: [DONE]' (cut off mid-answer)"
    )


def _sse_usage(data: str) -> tuple[Usage, str | None]:
    doc = json_object(data)

    def number(key: str) -> int | None:
        value = doc.get(key)
        return value if isinstance(value, int) else None

    instance = doc.get("instance")
    usage = usage_from(number("prompt_tokens"), number("completion_tokens"), number("total_tokens"))
    return usage, instance if isinstance(instance, str) else None


def _sse_error(data: str) -> RequestFailed:
    doc = json_object(data)
    status = doc.get("status")
    detail = doc.get("detail") or doc.get("title") or data
    return RequestFailed(str(status) if status is not None else "stream-error", _clip(str(detail)))


def _failure(response: httpx.Response) -> RequestFailed:
    """A 4xx/5xx response -> RequestFailed, reading RFC 9457 problem details when present."""
    status = str(response.status_code)
    retry_after = _retry_after(response.headers)
    content_type = response.headers.get("content-type", "")
    if "json" in content_type:
        doc = json_object(response.text)
        title, detail = doc.get("title"), doc.get("detail")
        parts = [str(p) for p in (title, detail) if p]
        if parts:
            return RequestFailed(status, _clip(" — ".join(parts)), retry_after)
    text = response.text.strip() or response.reason_phrase
    return RequestFailed(status, _clip(text), retry_after)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _transport_failure(exc: httpx.HTTPError, url: str) -> RequestFailed:
    if isinstance(exc, httpx.TimeoutException):
        return RequestFailed("timeout", f"no answer from {url} in time ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        return RequestFailed("connect-error", f"cannot connect to {url} — is the gateway running?")
    return RequestFailed("protocol-error", f"{type(exc).__name__} talking to {url}: {_clip(str(exc))}")


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"
