"""Azure OpenAI through the official ``openai`` SDK: the only module that imports it.

One :class:`AzureOpenAIUpstream` per configured instance. ``Type: azure`` authenticates with the
API key, ``Type: azuread`` with an Entra token from azure-identity. The SDK's exceptions are
translated here into the gateway's tree (``core._errors``).
"""

from __future__ import annotations

import asyncio
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
    UpstreamMisconfigured,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from .._values import ChatMessage, Usage
from ..config import ChatCompletionsOptions, ServiceSettings
from ..telemetry import inject_trace_context
from ._cooldown import cooldown_seconds
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
            max_retries=0,  # the gateway owns retries (core._gateway): one attempt per instance
            timeout=settings.timeout_seconds,
            http_client=openai.DefaultAioHttpClient(),
            **auth,
        )
        self._params = _request_params(settings, options)
        self._path = f"/deployments/{quote(settings.deployment, safe='')}/chat/completions"

    async def complete(self, messages: Sequence[ChatMessage]) -> UpstreamReply:
        client = self._client
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
        except httpx2.TimeoutException:
            raise UpstreamTimeout(f"Azure OpenAI instance '{self.name}' did not answer in time") from None
        except (httpx2.HTTPError, OSError, orjson.JSONDecodeError) as exc:
            raise UpstreamError(
                f"Azure OpenAI instance '{self.name}' sent an unreadable answer ({type(exc).__name__})"
            ) from None
        return _reply(payload)

    async def open_stream(self, messages: Sequence[ChatMessage]) -> UpstreamStream:
        client = self._client
        body = {"messages": _wire(messages), "stream": True, "stream_options": {"include_usage": True},
                **self._params}
        try:
            response = await client.post(
                self._path, content=orjson.dumps(body), cast_to=httpx2.Response,
                options=_options(), stream=True, stream_cls=openai.AsyncStream[Any],
            )
        except openai.OpenAIError as exc:
            raise translate(self.name, exc) from None
        except httpx2.TimeoutException:
            raise UpstreamTimeout(f"Azure OpenAI instance '{self.name}' did not answer in time") from None
        # With cast_to=httpx2.Response the SDK hands back the unread response, whatever stream_cls.
        return _SseStream(self.name, cast(httpx2.Response, response), self.settings.timeout_seconds)

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
    """Server-Sent Events of a chat completion, parsed with orjson (no model per chunk).

    A stream that sends nothing for ``idle_seconds`` (the instance's ``TimeoutSeconds``) has
    stalled: it ends with :class:`UpstreamTimeout` (504), not a hang.
    """

    def __init__(self, name: str, response: httpx2.Response, idle_seconds: float) -> None:
        self._name = name
        self._response = response
        self._idle = idle_seconds

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        lines = self._response.aiter_lines().__aiter__()
        try:
            while True:
                try:
                    async with asyncio.timeout(self._idle):
                        line = await anext(lines)
                except StopAsyncIteration:
                    return
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                for event in _events(self._name, orjson.loads(data)):
                    yield event
        except (TimeoutError, httpx2.TimeoutException):
            raise UpstreamTimeout(
                f"Azure OpenAI instance '{self._name}' stalled: no data for {self._idle:g} s "
                f"(AzureOpenAI:Services:{self._name}:TimeoutSeconds)"
            ) from None
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


def translate(name: str, exc: openai.OpenAIError) -> GatewayError:
    """The SDK's exception as a gateway error; details never include keys or tokens."""
    where = f"Azure OpenAI instance '{name}'"
    key = f"AzureOpenAI:Services:{name}"
    if isinstance(exc, openai.APITimeoutError) and not _never_connected(exc):
        return UpstreamTimeout(f"{where} did not answer in time ({key}:TimeoutSeconds)")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamUnavailable(f"{where} is unreachable (check {key}:Endpoint)")
    if isinstance(exc, openai.RateLimitError):
        return RateLimited(f"{where} is rate limited", cooldown_seconds(exc.response.headers.get))
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return UpstreamMisconfigured(
            f"{where} rejected the gateway's credentials ({exc.status_code}); check {key}:ApiKey "
            "(Type azure) or the identity's 'Cognitive Services OpenAI User' role (Type azuread)",
            instance=name, setting=f"{key}:ApiKey",
        )
    if isinstance(exc, openai.NotFoundError):
        return UpstreamMisconfigured(
            f"{where} has no such deployment; check {key}:Deployment, {key}:Version and {key}:Endpoint",
            instance=name, setting=f"{key}:Deployment",
        )
    if isinstance(exc, openai.BadRequestError):
        return _bad_request(name, exc)
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 503:
            return UpstreamUnavailable(f"{where} is unavailable (503)",
                                       cooldown_seconds(exc.response.headers.get))
        return UpstreamError(f"{where} failed with status {exc.status_code}")
    return UpstreamError(f"{where} failed ({type(exc).__name__})")


# Request parameters the gateway sets from its settings: a 400 about one is the gateway's fault.
_SETTING_OF_PARAM = {
    "temperature": "ChatCompletionsOptions:Temperature",
    "top_p": "ChatCompletionsOptions:NucleusSamplingFactor",
    "frequency_penalty": "ChatCompletionsOptions:FrequencyPenalty",
    "presence_penalty": "ChatCompletionsOptions:PresencePenalty",
    "stop": "ChatCompletionsOptions:StopSequences",
    "max_tokens": "AzureOpenAI:Services:{name}:MaxResponseTokens",
    "model": "AzureOpenAI:Services:{name}:Deployment",
    "stream_options": "AzureOpenAI:Services:{name}:Version",
}


def _bad_request(name: str, exc: openai.BadRequestError) -> GatewayError:
    """400 about the caller's conversation -> 400; about a parameter the gateway set -> 502."""
    message = _message(exc)
    template = _SETTING_OF_PARAM.get(_param(exc).split("[")[0].split(".")[0])
    if template is None:
        return InvalidRequest(f"Azure OpenAI instance '{name}' rejected the conversation: {message}")
    setting = template.format(name=name)
    return UpstreamMisconfigured(
        f"Azure OpenAI instance '{name}' rejected the gateway's setting {setting}: {message}",
        instance=name, setting=setting, instance_fault="{name}" in template,
    )


def _param(exc: openai.BadRequestError) -> str:
    body = exc.body
    inner = body.get("error", body) if isinstance(body, dict) else None
    param = inner.get("param") if isinstance(inner, dict) else None
    return param if isinstance(param, str) else ""


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
