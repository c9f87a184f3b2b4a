"""Azure OpenAI through the official ``openai`` SDK: the only module that imports it.

One :class:`AzureOpenAIUpstream` per configured instance. ``Type: azure`` authenticates with the
API key, ``Type: azuread`` with an Entra token from azure-identity. The SDK's exceptions are
translated here into the gateway's tree (``core._errors``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, cast
from urllib.parse import quote

import httpx2
import openai
import orjson
from openai import AsyncAzureOpenAI

from .._errors import (
    GatewayError,
    InvalidRequest,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from .._values import ChatMessage, Usage
from ..config import ChatCompletionsOptions, ServiceSettings
from ..telemetry import inject_trace_context
from ._port import StreamEvent, TokenProvider, UpstreamReply, UpstreamStream

_JSON = "application/json"
COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"


class AzureOpenAIUpstream:
    def __init__(
        self,
        name: str,
        settings: ServiceSettings,
        options: ChatCompletionsOptions,
        *,
        token_provider: TokenProvider | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        auth: dict[str, Any] = (
            {"azure_ad_token_provider": token_provider}
            if settings.type == "azuread"
            else {"api_key": settings.api_key.get_secret_value()}
        )
        self._client = AsyncAzureOpenAI(
            azure_endpoint=settings.endpoint,
            api_version=settings.version,
            max_retries=settings.max_retries,
            timeout=settings.timeout_seconds,
            http_client=openai.DefaultAioHttpClient(),
            **auth,
        )
        self._no_retry = self._client.with_options(max_retries=0)
        self._params = _request_params(settings, options)
        self._path = f"/deployments/{quote(settings.deployment, safe='')}/chat/completions"

    async def complete(self, messages: Sequence[ChatMessage], *, retry: bool) -> UpstreamReply:
        client = self._client if retry else self._no_retry
        # client.post() is the SDK's own transport (auth, retry-after-ms, errors) without the
        # per-request TypedDict transform and JSON re-encoding of chat.completions.create(),
        # which cost more than everything else on the hot path together.
        try:
            response = await client.post(
                self._path,
                content=orjson.dumps({"messages": _wire(messages), **self._params}),
                cast_to=httpx2.Response,
                options=_options(),
            )
            payload = orjson.loads(await response.aread())
        except openai.OpenAIError as exc:
            raise translate(self.name, exc) from None
        except (httpx2.HTTPError, OSError, orjson.JSONDecodeError) as exc:
            raise UpstreamError(
                f"Azure OpenAI instance '{self.name}' sent an unreadable answer ({type(exc).__name__})"
            ) from None
        return _reply(payload)

    async def open_stream(self, messages: Sequence[ChatMessage], *, retry: bool) -> UpstreamStream:
        client = self._client if retry else self._no_retry
        body = {"messages": _wire(messages), "stream": True, "stream_options": {"include_usage": True},
                **self._params}
        try:
            response = await client.post(
                self._path, content=orjson.dumps(body), cast_to=httpx2.Response,
                options=_options(), stream=True, stream_cls=openai.AsyncStream[Any],
            )
        except openai.OpenAIError as exc:
            raise translate(self.name, exc) from None
        # With cast_to=httpx2.Response the SDK hands back the unread response, whatever stream_cls.
        return _SseStream(self.name, cast(httpx2.Response, response))

    async def aclose(self) -> None:
        await self._client.close()


def _options() -> Any:
    """Request options: JSON, and the current span's ``traceparent`` when tracing is on."""
    return {"headers": inject_trace_context({"Content-Type": _JSON})}


def _reply(payload: Any) -> UpstreamReply:
    """Text and usage of a chat.completion JSON body (choices may be absent when filtered)."""
    if not isinstance(payload, dict):
        return UpstreamReply("", None)
    choices = payload.get("choices") or [{}]
    message = choices[0].get("message") or {}
    reasons = tuple(str(c["finish_reason"]) for c in choices if isinstance(c, dict) and c.get("finish_reason"))
    return UpstreamReply(str(message.get("content") or ""), _usage(payload), str(payload.get("model") or ""),
                         reasons)


def _usage(payload: dict[str, Any]) -> Usage | None:
    usage = payload.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        return Usage(usage["prompt_tokens"], int(usage.get("completion_tokens") or 0))
    return None


class _SseStream:
    """Server-Sent Events of a chat completion, parsed with orjson (no model per chunk)."""

    def __init__(self, name: str, response: httpx2.Response) -> None:
        self._name = name
        self._response = response

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        try:
            async for line in self._response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                for event in _events(self._name, orjson.loads(data)):
                    yield event
        except (httpx2.HTTPError, OSError) as exc:
            raise UpstreamUnavailable(
                f"Azure OpenAI instance '{self._name}' dropped the stream ({type(exc).__name__})"
            ) from None
        except orjson.JSONDecodeError:
            raise UpstreamError(f"Azure OpenAI instance '{self._name}' sent an unreadable event") from None

    async def aclose(self) -> None:
        await self._response.aclose()


def _events(name: str, chunk: Any) -> list[StreamEvent]:
    if not isinstance(chunk, dict):
        return []
    if isinstance(chunk.get("error"), dict):
        message = str(chunk["error"].get("message", "error event"))[:300]
        raise UpstreamError(f"Azure OpenAI instance '{name}' failed mid-stream: {message}")
    model = str(chunk.get("model") or "")
    events = [
        StreamEvent(text=delta["content"], model=model)
        for choice in chunk.get("choices") or ()
        if isinstance(delta := choice.get("delta"), dict) and isinstance(delta.get("content"), str)
        and delta["content"]
    ]
    events += [StreamEvent(model=model, finish_reason=str(choice["finish_reason"]))
               for choice in chunk.get("choices") or () if choice.get("finish_reason")]
    usage = _usage(chunk)
    if usage is not None:
        events.append(StreamEvent(usage=usage))
    return events


def _wire(messages: Sequence[ChatMessage]) -> list[Any]:
    return [{"role": m.role, "content": m.content} for m in messages]


def _request_params(settings: ServiceSettings, options: ChatCompletionsOptions) -> dict[str, Any]:
    params: dict[str, Any] = {"model": settings.deployment, "max_tokens": settings.max_response_tokens}
    optional = {
        "temperature": options.temperature,
        "top_p": options.nucleus_sampling_factor,
        "frequency_penalty": options.frequency_penalty,
        "presence_penalty": options.presence_penalty,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    if options.stop_sequences:
        params["stop"] = list(options.stop_sequences)
    return params


def retry_after_seconds(headers: httpx2.Headers | None) -> float | None:
    """``retry-after-ms`` (Azure OpenAI) first, then ``retry-after`` in seconds."""
    if headers is None:
        return None
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / divisor)
        except ValueError:
            continue
    return None


def translate(name: str, exc: openai.OpenAIError) -> GatewayError:
    """The SDK's exception as a gateway error; details never include keys or tokens."""
    where = f"Azure OpenAI instance '{name}'"
    if isinstance(exc, openai.APITimeoutError) and not _never_connected(exc):
        return UpstreamTimeout(f"{where} did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamUnavailable(f"{where} is unreachable")
    if isinstance(exc, openai.RateLimitError):
        wait = retry_after_seconds(exc.response.headers)
        return RateLimited(f"{where} is rate limited; retry later", wait if wait is not None else 1.0)
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return UpstreamError(f"{where} rejected the gateway's credentials; check its ApiKey or role")
    if isinstance(exc, openai.NotFoundError):
        return UpstreamError(f"{where} has no such deployment; check its Deployment and Version")
    if isinstance(exc, openai.BadRequestError):
        return InvalidRequest(f"{where} rejected the conversation: {_message(exc)}")
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 503:
            return UpstreamUnavailable(f"{where} is unavailable (503)",
                                       retry_after_seconds(exc.response.headers))
        return UpstreamError(f"{where} failed with status {exc.status_code}")
    return UpstreamError(f"{where} failed ({type(exc).__name__})")


def _never_connected(exc: BaseException) -> bool:
    """True when the request never reached the instance (safe to retry elsewhere).

    The SDK's aiohttp transport reports a refused connection as ``ConnectTimeout``, so the
    cause chain is inspected rather than the SDK's exception class.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, httpx2.ConnectError | httpx2.ConnectTimeout | ConnectionRefusedError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])[:300]
    return f"status {exc.status_code}"
