"""The Azure OpenAI-compatible API's core: which instances serve a client's deployment name, what the
gateway must read from a body it otherwise passes through, and a relayed stream billed once.

A body is parsed once (orjson) to validate it and to read ``stream``, ``model`` and what a limit's
estimate needs; the bytes sent upstream are the caller's own, except that a stream whose caller did
not ask for ``stream_options.include_usage`` gets it (spliced in, so the rest stays byte for byte).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ._errors import InvalidRequest, NotFound, UpstreamError
from ._tokens import REPLY_PRIMING, TOKENS_PER_MESSAGE, count_text
from ._values import Budget, Completion, Method, Usage
from .config import Settings
from .upstream import Operation, RelayStream

API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_INCLUDE_USAGE = b'"stream_options":{"include_usage":true}'


class DeploymentCatalog:
    """Client deployment name (case-insensitive) -> {instance: the instance's own deployment}.

    Per instance: ``AzureOpenAI:Services:<Name>:Deployments:<client name>`` when set, else the
    instance serves the name when its ``Deployment`` or ``Model`` equals it.
    """

    def __init__(self, settings: Settings, usable: Iterable[str]) -> None:
        served: dict[str, dict[str, str]] = {}
        for name in usable:
            service = settings.azure_openai.services[name]
            implicit = {service.deployment.lower(): service.deployment, service.model.lower(): service.deployment}
            explicit = {client.strip().lower(): own.strip() for client, own in service.deployments.items()}
            for client, own in {**implicit, **explicit}.items():
                if client and own:
                    served.setdefault(client, {})[name] = own
        self._served = served

    def serving(self, client_name: str) -> Mapping[str, str]:
        found = self._served.get(client_name.strip().lower())
        if not found:
            known = ", ".join(sorted(self._served)) or "none"
            raise NotFound(
                f"The API deployment '{client_name[:100]}' does not exist on this gateway "
                f"(deployments: {known}); map it with AzureOpenAI:Services:<Name>:Deployments:<name>"
            )
        return found


@dataclass(frozen=True, slots=True)
class RelayRequest:
    """What the gateway read from a caller's body, and the bytes it sends upstream."""

    operation: Operation
    deployment: str
    body: bytes
    stream: bool
    usage_added: bool  # the gateway asked for the usage event: keep it from the caller
    document: dict[str, Any]

    def body_for(self, instance_deployment: str) -> bytes:
        """The bytes for one instance: the Responses API names the deployment in ``model``."""
        if self.operation != "responses" or self.document.get("model") == instance_deployment:
            return self.body
        return orjson.dumps({**self.document, "model": instance_deployment})

    @property
    def method(self) -> Method:
        if self.operation == "embeddings":
            return "embeddings"
        return "stream" if self.stream else "chat"

    def estimate(self) -> int:
        """Tokens to reserve before sending: the prompt, plus max_tokens / max_completion_tokens.

        The limits work (issue 11) admits on this and settles with the billed usage.
        """
        limit = self.document.get("max_completion_tokens") or self.document.get("max_tokens") or 0
        return prompt_tokens(self.document) + (limit if isinstance(limit, int) else 0)


def parse_request(
    body: bytes, operation: Operation, deployment: str | None, api_version: str | None
) -> RelayRequest:
    """Validate what the gateway relies on; everything else is the upstream's to judge."""
    if api_version is not None and not API_VERSION.match(api_version):
        raise InvalidRequest(f"api-version {api_version[:40]!r} is not a version like 2024-10-21")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if deployment is None or operation == "responses":
        model = document.get("model")
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequest("'model' is required: the name of the deployment to use")
        deployment = model
    stream = document.get("stream", False)
    if not isinstance(stream, bool) or (stream and operation == "embeddings"):
        raise InvalidRequest("'stream' must be a boolean (and is not allowed for embeddings)")
    options = document.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object")
    # The Responses API always ends a stream with its usage (response.completed): nothing to add.
    usage_added = stream and operation == "chat/completions" and not (options or {}).get("include_usage")
    if usage_added:
        body = _with_include_usage(body, document)
    return RelayRequest(operation, deployment, body, stream, usage_added, document)


def _with_include_usage(body: bytes, document: dict[str, Any]) -> bytes:
    """The caller's bytes with ``stream_options.include_usage`` on: spliced in when absent."""
    if "stream_options" not in document:
        trimmed = body.rstrip()
        if trimmed.endswith(b"}"):
            return trimmed[:-1] + b"," + _INCLUDE_USAGE + b"}"
    options = {**(document.get("stream_options") or {}), "include_usage": True}
    return orjson.dumps({**document, "stream_options": options})


def prompt_tokens(document: Mapping[str, Any]) -> int:
    """tiktoken's count of a chat body's messages or an embeddings body's input (text parts only)."""
    messages = document.get("messages")
    if isinstance(messages, list):
        total = REPLY_PRIMING
        for message in messages:
            if isinstance(message, dict):
                total += TOKENS_PER_MESSAGE + sum(count_text(t) for t in _texts(message.get("content")))
                total += count_text(str(message.get("role", "")))
        return total
    instructions = document.get("instructions")
    extra = count_text(instructions) if isinstance(instructions, str) else 0
    return extra + sum(count_text(t) for t in _texts(document.get("input")))


def _texts(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        out: list[str] = []
        for item in value:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict) and isinstance(item.get("text"), str):
                out.append(item["text"])
            elif isinstance(item, dict) and isinstance(item.get("content"), str):  # a Responses input message
                out.append(item["content"])
            elif isinstance(item, dict) and isinstance(item.get("content"), list):  # ... with parts (one level)
                out.extend(p["text"] for p in item["content"] if isinstance(p, dict) and isinstance(p.get("text"), str))
            elif isinstance(item, int):
                out.append(" ")  # a token id: one token
        return out
    return []


@dataclass(frozen=True, slots=True)
class RelayResponse:
    """What a host sends back: the upstream's status and passed headers, then ``body`` or ``stream``.

    ``usage`` is what was billed (None for an answer that is not a success).
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    instance: str
    body: bytes = b""
    stream: RelayedStream | None = None
    usage: Usage | None = None
    budget: Budget | None = None  # the tenant's limits after this request, for x-ratelimit-* headers

    def with_budget(self, budget: Budget) -> RelayResponse:
        return RelayResponse(self.status, self.headers, self.instance, self.body, self.stream, self.usage, budget)


class RelayedStream:
    """SSE bytes as they arrive. Always ``aclose()`` it; billed once however it ends.

    When the upstream sent no usage (a broken stream), the prompt and the text seen are counted; a
    stream that breaks after its first byte is reported to ``on_break`` (the circuit breaker).
    """

    def __init__(self, instance: str, request: RelayRequest, upstream: RelayStream,
                 on_finish: Callable[[Completion], None],
                 on_break: Callable[[UpstreamError], None] | None = None) -> None:
        self.instance = instance
        self.completion: Completion | None = None
        self._request = request
        self._upstream = upstream
        self._on_finish = on_finish
        self._on_break = on_break

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._upstream:
                yield chunk
        except UpstreamError as exc:
            if self._on_break is not None:
                self._on_break(exc)
            raise
        self._finish()

    async def aclose(self) -> None:
        try:
            await self._upstream.aclose()
        finally:
            self._finish()

    def _finish(self) -> None:
        if self.completion is not None:
            return
        usage = self._upstream.usage
        if usage is None:
            usage = Usage(prompt_tokens(self._request.document), count_text(self._upstream.texts()))
        self.completion = Completion("", self.instance, usage, self._upstream.usage is not None)
        self._on_finish(self.completion)


def fallback_usage(request: RelayRequest, answer: bytes) -> Usage:
    """tiktoken's count when a successful JSON answer carried no usage."""
    try:
        document = orjson.loads(answer)
    except orjson.JSONDecodeError:
        document = {}
    text = ""
    if isinstance(document, dict):
        text = "".join(
            str((choice.get("message") or {}).get("content") or "")
            for choice in document.get("choices") or () if isinstance(choice, dict)
        ) + "".join(  # the Responses API's output items
            str(part.get("text") or "")
            for item in document.get("output") or () if isinstance(item, dict)
            for part in item.get("content") or () if isinstance(part, dict)
        )
    return Usage(prompt_tokens(request.document), count_text(text))
