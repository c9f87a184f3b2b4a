"""The gateway: route, call Azure OpenAI with failover, count every token per tenant."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest

from ._conversation import parse_conversation
from ._failover import Failover
from ._health import Health
from ._routing import Router
from ._tokens import count_prompt, count_text
from ._values import ChatMessage, Completion, Method, Usage
from .config import Settings
from .state import StateStore
from .telemetry import GatewayMetrics
from .upstream import Upstream, UpstreamStream

log = logging.getLogger("core.gateway")


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
        *,
        health: Health,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._metrics = metrics
        self._upstreams = dict(upstreams)
        self._router = router
        self._health = health
        self._failover = Failover(settings, self._upstreams, router, health, metrics, self._bill)
        metrics.watch_instances(lambda: {n: health.state(n) for n in health.names})
        self._store = store
        self._background = tuple(background)
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
        async def call(upstream: Upstream, prompt: tuple[ChatMessage, ...]) -> Completion:
            reply = await upstream.complete(prompt)
            usage = reply.usage or Usage(count_prompt(prompt), count_text(reply.text))
            return Completion(reply.text, upstream.name, usage, reply.usage is not None)

        completion = await self._failover.run(tenant, "chat", messages, call)
        self._bill(tenant, "chat", completion)
        return completion

    async def open_stream(self, tenant: str, messages: Sequence[ChatMessage]) -> ChatStream:
        async def call(upstream: Upstream, prompt: tuple[ChatMessage, ...]) -> ChatStream:
            stream = self._failover.watch(upstream.name, await upstream.open_stream(prompt))
            return ChatStream(upstream.name, prompt, stream, lambda done: self._bill(tenant, "stream", done))

        return await self._failover.run(tenant, "stream", messages, call)

    def _bill(self, tenant: str, method: Method, completion: Completion) -> None:
        """The one place a finished chat or stream (or a timed-out call's prompt) is accounted for;
        ``completion.usage_reported`` says whether Azure counted the tokens or the gateway did."""
        self._metrics.record(completion.instance, tenant, method, completion.usage, completion.usage_reported)

    async def aclose(self) -> None:
        for task in self._background:
            await task.aclose()
        await asyncio.gather(*(u.aclose() for u in self._upstreams.values()))
        await self._store.aclose()


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
