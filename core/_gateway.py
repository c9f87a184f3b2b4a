"""The gateway: route, call Azure OpenAI with failover, count every token per tenant."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry, generate_latest

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
from .telemetry import Attempt, GatewayMetrics, Tracing
from .upstream import Upstream, UpstreamStream

log = logging.getLogger("core.gateway")

DEFAULT_CONTEXT_TOKENS = 4096  # the C# sample's default when ChatCompletionsOptions:MaxTokens is unset
T = TypeVar("T")


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
        tracing: Tracing | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._metrics = metrics
        self._upstreams = dict(upstreams)
        self._router = router
        self._store = store
        self._background = tuple(background)
        self._tracing = tracing or Tracing()
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
        async def call(upstream: Upstream, prompt: tuple[ChatMessage, ...], retry: bool, span: Attempt) -> Completion:
            reply = await upstream.complete(prompt, retry=retry)
            usage = reply.usage or Usage(count_prompt(prompt), count_text(reply.text))
            completion = Completion(reply.text, upstream.name, usage, reply.usage is not None)
            span.finish(completion, reply.model, reply.finish_reasons)
            return completion

        completion = await self._with_failover(tenant, messages, call)
        self._bill(tenant, "chat", completion)
        return completion

    async def open_stream(self, tenant: str, messages: Sequence[ChatMessage]) -> ChatStream:
        async def call(upstream: Upstream, prompt: tuple[ChatMessage, ...], retry: bool, span: Attempt) -> ChatStream:
            stream = await upstream.open_stream(prompt, retry=retry)
            span.hand_over()  # the attempt's span ends with the stream
            return ChatStream(upstream.name, prompt, stream, lambda done: self._bill(tenant, "stream", done), span)

        return await self._with_failover(tenant, messages, call)

    def _bill(self, tenant: str, method: Method, completion: Completion) -> None:
        """The one place a finished chat or stream is accounted for."""
        self._metrics.tokens.record(completion.instance, tenant, method, completion.usage)

    async def aclose(self) -> None:
        for task in self._background:
            await task.aclose()
        await asyncio.gather(*(u.aclose() for u in self._upstreams.values()))
        await self._store.aclose()

    async def _with_failover(
        self,
        tenant: str,
        messages: Sequence[ChatMessage],
        call: Callable[[Upstream, tuple[ChatMessage, ...], bool, Attempt], Awaitable[T]],
    ) -> T:
        candidates = await self._router.candidates(tenant)
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
                with self._tracing.attempt("chat", tenant=tenant, instance=name, model=upstream.settings.model,
                                           endpoint=upstream.settings.endpoint, attempt=position + 1,
                                           prompt=prompt) as span:
                    return await call(upstream, prompt, is_last, span)
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
        span: Attempt | None = None,
    ) -> None:
        self.instance = instance
        self._span = span
        self._model = ""
        self._finish_reasons: list[str] = []
        self.completion: Completion | None = None
        self._on_finish = on_finish
        self._prompt = prompt
        self._upstream = upstream
        self._parts: list[str] = []
        self._usage: Usage | None = None
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[str]:
        try:
            async for event in self._upstream:
                if event.usage is not None:
                    self._usage = event.usage
                if event.finish_reason:
                    self._finish_reasons.append(event.finish_reason)
                if event.text:
                    self._model = event.model or self._model
                    self._parts.append(event.text)
                    yield event.text
        except GatewayError as exc:
            if self._span is not None:
                self._span.fail(exc)  # the attempt's span says how the stream broke
            raise
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
        if self._span is not None:
            self._span.finish(self.completion, self._model, self._finish_reasons)
