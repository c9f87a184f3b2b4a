"""The gateway: route, call Azure OpenAI with failover, count every token per tenant."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry, generate_latest

from ._compat import (
    DeploymentCatalog,
    RelayedStream,
    RelayRequest,
    RelayResponse,
    fallback_usage,
    parse_request,
)
from ._conversation import parse_conversation, truncate, with_system_prompt
from ._errors import (
    GatewayError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ._routing import Router
from ._tokens import count_prompt, count_text
from ._values import ChatMessage, Completion, Method, Usage
from .config import Settings
from .state import StateStore
from .telemetry import GatewayMetrics
from .upstream import Operation, Relay, Upstream, UpstreamStream

log = logging.getLogger("core.gateway")

DEFAULT_CONTEXT_TOKENS = 4096  # the C# sample's default when ChatCompletionsOptions:MaxTokens is unset
T = TypeVar("T")
# The compatible API sends the caller's own body: _with_failover's prompt preparation gets a trivial
# system message (so no SystemPrompt is added and nothing needs truncating).
_NO_PROMPT = (ChatMessage("system", ""),)


class Background(Protocol):
    """Something that runs beside the gateway (the metrics pusher)."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class Gateway:
    """Everything a host may do with the core: the hosts call these methods and nothing else."""

    def __init__(
        self,
        settings: Settings,
        upstreams: Mapping[str, Upstream],
        router: Router,
        metrics: GatewayMetrics,
        registry: CollectorRegistry,
        store: StateStore,
        background: Sequence[Background] = (),
        relays: Mapping[str, Relay] | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._metrics = metrics
        self._upstreams = dict(upstreams)
        self._router = router
        self._store = store
        self._background = tuple(background)
        self._relays = dict(relays or {})
        self._catalog = DeploymentCatalog(settings, self._relays)
        self._started = False

    @property
    def registry(self) -> CollectorRegistry:
        """The Prometheus registry every metric of this gateway lives in (tests read it)."""
        return self._registry

    @property
    def max_body_bytes(self) -> int:
        """The largest request body a host should read (``Gateway:MaxBodyBytes``)."""
        return self._settings.gateway.max_body_bytes

    def conversation(self, raw: object) -> tuple[ChatMessage, ...]:
        """A caller's conversation (the decoded JSON array), validated; :class:`InvalidRequest` if not."""
        return parse_conversation(raw, max_messages=self._settings.gateway.max_messages)

    def observe_request(self, route: str, status: int | str, seconds: float) -> None:
        """Count and time one request a host answered (``gateway_requests_total``, latency)."""
        self._metrics.observe_request(route, status, seconds)

    def metrics_exposition(self) -> bytes | None:
        """``/metrics`` in Prometheus text format, or None when ``Prometheus:Enabled`` is false."""
        if not self._settings.prometheus.enabled:
            return None
        return generate_latest(self._registry)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        for task in self._background:
            await task.start()

    def echo(self, tenant: str, value: int) -> str:
        return f"tenant: {tenant} value: {value}"

    async def chat(self, tenant: str, messages: Sequence[ChatMessage]) -> Completion:
        async def call(upstream: Upstream, prompt: tuple[ChatMessage, ...], retry: bool) -> Completion:
            reply = await upstream.complete(prompt, retry=retry)
            usage = reply.usage or Usage(count_prompt(prompt), count_text(reply.text))
            return Completion(reply.text, upstream.name, usage, reply.usage is not None)

        completion = await self._with_failover(tenant, messages, call)
        self._bill(tenant, "chat", completion)
        return completion

    async def open_stream(self, tenant: str, messages: Sequence[ChatMessage]) -> ChatStream:
        async def call(upstream: Upstream, prompt: tuple[ChatMessage, ...], retry: bool) -> ChatStream:
            stream = await upstream.open_stream(prompt, retry=retry)
            return ChatStream(upstream.name, prompt, stream, lambda done: self._bill(tenant, "stream", done))

        return await self._with_failover(tenant, messages, call)

    async def relay(
        self, tenant: str, operation: Operation, body: bytes, *, deployment: str | None = None,
        api_version: str | None = None,
    ) -> RelayResponse:
        """The compatible API: the caller's body, passed through to an instance serving ``deployment``
        (else the body's ``model``), with chat's routing and failover; billed once when it succeeds.

        Raises :class:`NotFound` for an unknown deployment, :class:`InvalidRequest` for a body the
        gateway cannot read, and the failover's last error (with ``upstream_response`` when Azure sent one).
        """
        request = parse_request(body, operation, deployment, api_version)
        serving = self._catalog.serving(request.deployment)
        # Limits (issue 11) admit here on request.estimate() and settle in _bill with the real usage.

        async def call(upstream: Upstream, _: tuple[ChatMessage, ...], retry: bool) -> RelayResponse:
            return await self._relay_once(tenant, request, upstream.name, serving[upstream.name], retry,
                                          api_version)

        return await self._with_failover(tenant, _NO_PROMPT, call, among=frozenset(serving))

    async def _relay_once(
        self, tenant: str, request: RelayRequest, name: str, own: str, retry: bool, api_version: str | None
    ) -> RelayResponse:
        relay = self._relays[name]
        if request.stream:
            stream = await relay.open_stream(own, request.operation, request.body_for(own), api_version=api_version,
                                             keep_usage_event=not request.usage_added, retry=retry)
            if stream.status >= 300:  # the caller's 4xx, whole
                try:
                    body = b"".join([part async for part in stream])
                finally:
                    await stream.aclose()
                return RelayResponse(stream.status, stream.headers, name, body=body)
            relayed = RelayedStream(name, request, stream, lambda done: self._bill(tenant, "stream", done))
            return RelayResponse(stream.status, stream.headers, name, stream=relayed)
        reply = await relay.post(own, request.operation, request.body_for(own), api_version=api_version,
                                 retry=retry)
        if reply.status >= 300:
            return RelayResponse(reply.status, reply.headers, name, body=reply.body)
        usage = reply.usage or fallback_usage(request, reply.body)
        self._bill(tenant, request.method, Completion("", name, usage, reply.usage is not None))
        return RelayResponse(reply.status, reply.headers, name, body=reply.body, usage=usage)

    def _bill(self, tenant: str, method: Method, completion: Completion) -> None:
        """The one place a finished chat or stream is accounted for."""
        self._metrics.tokens.record(completion.instance, tenant, method, completion.usage)

    async def aclose(self) -> None:
        for task in self._background:
            await task.aclose()
        await asyncio.gather(*(u.aclose() for u in self._upstreams.values()),
                             *(r.aclose() for r in self._relays.values()))
        await self._store.aclose()

    async def _with_failover(
        self,
        tenant: str,
        messages: Sequence[ChatMessage],
        call: Callable[[Upstream, tuple[ChatMessage, ...], bool], Awaitable[T]],
        among: frozenset[str] | None = None,  # compatible API: the instances serving the deployment
    ) -> T:
        candidates = await self._router.candidates(tenant, among=among)
        if not candidates:
            raise UpstreamUnavailable(
                "no Azure OpenAI instance is configured; set AzureOpenAI:Services:<Name>:Endpoint"
            )
        with_prompt = with_system_prompt(messages, self._settings.azure_openai.system_prompt)
        context = self._settings.chat_completions_options.max_tokens or DEFAULT_CONTEXT_TOKENS
        prompts: dict[int, tuple[ChatMessage, ...]] = {}  # by budget: truncate once per budget
        last: GatewayError | None = None
        for position, name in enumerate(candidates):
            upstream = self._upstreams.get(name)
            if upstream is None:
                raise UpstreamUnavailable(
                    f"tenant '{tenant}' is mapped to instance '{name}', which has no endpoint or "
                    "credentials configured"
                )
            budget = context - upstream.settings.max_response_tokens
            if budget not in prompts:
                prompts[budget] = truncate(with_prompt, budget)
            prompt = prompts[budget]
            is_last = position == len(candidates) - 1
            try:
                return await call(upstream, prompt, is_last)
            except (RateLimited, UpstreamUnavailable) as exc:
                self._note_failure(name, exc)
                last = exc
            except UpstreamTimeout:
                self._metrics.upstream_failures.labels(name.lower(), "timeout").inc()
                raise  # the upstream may have done the work: never run it twice
            except UpstreamError as exc:
                self._note_failure(name, exc)
                last = exc
        assert last is not None
        raise last

    def _note_failure(self, name: str, exc: GatewayError) -> None:
        reason = type(exc).__name__.lower()
        self._metrics.upstream_failures.labels(name.lower(), reason).inc()
        wait = exc.retry_after
        self._router.cool_down(name, wait if wait is not None else self._settings.gateway.unhealthy_cooldown_seconds)
        log.warning("instance %s failed (%s); trying the next one if any", name, reason)


class ChatStream:
    """Text deltas of one streamed completion. Always ``aclose()`` it; tokens are counted once."""

    def __init__(
        self,
        instance: str,
        prompt: tuple[ChatMessage, ...],
        upstream: UpstreamStream,
        on_finish: Callable[[Completion], None],
    ) -> None:
        self.instance = instance
        self.completion: Completion | None = None
        self._on_finish = on_finish
        self._prompt = prompt
        self._upstream = upstream
        self._parts: list[str] = []
        self._usage: Usage | None = None
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[str]:
        async for event in self._upstream:
            if event.usage is not None:
                self._usage = event.usage
            if event.text:
                self._parts.append(event.text)
                yield event.text
        self._finish()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._upstream.aclose()
        finally:
            self._finish()

    def _finish(self) -> None:
        if self.completion is not None:
            return
        text = "".join(self._parts)
        usage = self._usage or Usage(count_prompt(self._prompt), count_text(text))
        self.completion = Completion(text, self.instance, usage, self._usage is not None)
        self._on_finish(self.completion)
