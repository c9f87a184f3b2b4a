"""The gateway's own routes (``/openai/chat``, ``/openai/stream``, gRPC Chat / Stream) to one Azure
OpenAI instance, on the gateway's shared aiohttp session: no SDK, no model objects.

Prepared once per instance: the URL, the credential header (``_session.Instance``) and the request's
constant tail (model, max_tokens and the ``ChatCompletionsOptions``), already JSON-encoded. Per
request: the messages encoded with orjson and put in front of that tail, bytes posted, the answer
parsed once; SSE relayed as it arrives, one ``orjson.loads`` per data event. Errors as in
``_session``'s table, and:

    404                    -> UpstreamMisconfigured naming the instance's Deployment
    400                    -> InvalidRequest (the caller's conversation), unless its ``param`` is one
                              the gateway sets: then UpstreamMisconfigured naming that setting (502)
    an unreadable answer   -> UpstreamError
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from .._errors import GatewayError, InvalidRequest, UpstreamError, UpstreamMisconfigured
from .._values import ChatMessage
from ..config import ChatCompletionsOptions, ServiceSettings
from ._port import StreamEvent, TokenProvider, UpstreamReply
from ._session import MAX_ERROR_BODY, Instance, SharedSession, end_stream, loads_object, usage_of

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
_STREAM = {"stream": True, "stream_options": {"include_usage": True}}


class ChatUpstream:
    """One instance for the C# sample's routes (``Upstream``); one attempt per call, no retry."""

    def __init__(
        self, name: str, settings: ServiceSettings, options: ChatCompletionsOptions, session: SharedSession,
        *, token_provider: TokenProvider | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._instance = Instance(name, settings, session, token_provider)
        self._url = URL(f"{settings.endpoint.rstrip('/')}/openai/deployments/{quote(settings.deployment, safe='')}"
                        f"/chat/completions?api-version={quote(settings.version)}", encoded=True)
        params = request_params(settings, options)
        # b',"model":...}': what follows the messages in every body, encoded once.
        self._tail = b"," + orjson.dumps(params)[1:]
        self._stream_tail = b"," + orjson.dumps({**_STREAM, **params})[1:]

    async def complete(self, messages: Sequence[ChatMessage]) -> UpstreamReply:
        instance = self._instance
        response = await self._answer(self._body(messages, self._tail), instance.timeout)
        data = await instance.read(response)
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"{instance.where} sent an unreadable answer (not JSON)") from None
        return _reply(payload)

    async def open_stream(self, messages: Sequence[ChatMessage]) -> SseChatStream:
        response = await self._answer(self._body(messages, self._stream_tail), self._instance.stream_timeout)
        return SseChatStream(self._instance, response)

    async def aclose(self) -> None:
        await self._instance.session.aclose()

    @staticmethod
    def _body(messages: Sequence[ChatMessage], tail: bytes) -> bytes:
        # ChatMessage is a dataclass of exactly (role, content): orjson writes it as the wire's object.
        return b'{"messages":' + orjson.dumps(messages) + tail

    async def _answer(self, body: bytes, limits: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        """The 2xx response, unread; any failure raised as the gateway's error."""
        instance = self._instance
        response = await instance.post(self._url, body, limits)
        if response.status < 400:
            return response
        error = await instance.read(response, limit=MAX_ERROR_BODY)
        raise self._failure(response.status, response.headers, error)

    def _failure(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        instance = self._instance
        if status == 404:
            key = instance.key
            return UpstreamMisconfigured(
                f"{instance.where} has no such deployment; check {key}:Deployment, {key}:Version and {key}:Endpoint",
                instance=self.name, setting=f"{key}:Deployment")
        if status == 400:
            return bad_request(self.name, status, body)
        return instance.status_error(status, headers)


class SseChatStream:
    """A chat completion's Server-Sent Events as ``StreamEvent``s, as they arrive.

    Data for no ``TimeoutSeconds`` ends it with ``UpstreamTimeout`` (aiohttp's ``sock_read``), a
    mid-stream ``error`` event with ``UpstreamError``, a dropped connection with ``UpstreamUnavailable``.
    """

    def __init__(self, instance: Instance, response: aiohttp.ClientResponse) -> None:
        self._instance = instance
        self._response = response
        self._complete = False

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        rest, done = b"", False
        try:
            async for chunk in self._response.content.iter_any():
                if done:
                    continue  # read to the end, so that the connection can go back to the pool
                lines = (rest + chunk if rest else chunk).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        break
                    for event in self._events(data):
                        yield event
        except (aiohttp.ClientError, OSError) as exc:  # TimeoutError (no data for too long) is an OSError
            if done:
                return  # all was said; aclose() closes the connection that never ended
            raise self._instance.stream_error(exc) from None
        self._complete = True

    async def aclose(self) -> None:
        end_stream(self._response, read_to_the_end=self._complete)

    def _events(self, data: bytes) -> list[StreamEvent]:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"{self._instance.where} sent an unreadable event") from None
        return chunk_events(self._instance.where, chunk) if isinstance(chunk, dict) else []


def chunk_events(where: str, chunk: dict[str, Any]) -> list[StreamEvent]:
    """One ``chat.completion.chunk``'s deltas, finish reasons and usage; its ``error`` raised."""
    if isinstance(chunk.get("error"), dict):
        message = str(chunk["error"].get("message", "error event"))[:300]
        raise UpstreamError(f"{where} failed mid-stream: {message}")
    model = str(chunk.get("model") or "")
    events: list[StreamEvent] = []  # one pass over the choices (per chunk: keep it cheap)
    finished: list[StreamEvent] = []
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and isinstance(text := delta.get("content"), str) and text:
            events.append(StreamEvent(text=text, model=model))
        if choice.get("finish_reason"):
            finished.append(StreamEvent(model=model, finish_reason=str(choice["finish_reason"])))
    if finished:
        events += finished
    if chunk.get("usage") is not None and (usage := usage_of(chunk["usage"])) is not None:
        events.append(StreamEvent(usage=usage))
    return events


def _reply(payload: Any) -> UpstreamReply:
    """Text and usage of a chat.completion JSON body (choices may be absent when filtered)."""
    if not isinstance(payload, dict):
        return UpstreamReply("", None)
    choices = [c for c in payload.get("choices") or () if isinstance(c, dict)] or [{}]
    message = choices[0].get("message") or {}
    reasons = tuple(str(c["finish_reason"]) for c in choices if c.get("finish_reason"))
    text = message.get("content") if isinstance(message, dict) else None
    return UpstreamReply(str(text or ""), usage_of(payload.get("usage")), str(payload.get("model") or ""), reasons)


def request_params(settings: ServiceSettings, options: ChatCompletionsOptions) -> dict[str, Any]:
    """The parameters every request to the instance carries (the C# sample's ChatCompletionsOptions)."""
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


def bad_request(name: str, status: int, body: bytes) -> GatewayError:
    """400 about the caller's conversation -> 400; about a parameter the gateway set -> 502."""
    payload = loads_object(body) or {}
    inner = payload.get("error", payload)
    error = inner if isinstance(inner, dict) else {}
    message = str(error["message"])[:300] if isinstance(error.get("message"), str) else f"status {status}"
    param = error.get("param") if isinstance(error.get("param"), str) else ""
    template = _SETTING_OF_PARAM.get(str(param).split("[")[0].split(".")[0])
    if template is None:
        return InvalidRequest(f"Azure OpenAI instance '{name}' rejected the conversation: {message}")
    setting = template.format(name=name)
    return UpstreamMisconfigured(
        f"Azure OpenAI instance '{name}' rejected the gateway's setting {setting}: {message}",
        instance=name, setting=setting, instance_fault="{name}" in template,
    )
