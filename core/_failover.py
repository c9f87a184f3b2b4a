"""One request across the instances: one attempt each, the next candidate at once, never a stall.

    for each available candidate (router order), at most once per request:
        success                -> the instance's circuit closes; done
        429                    -> cooling for the time it asked (capped), next candidate
        5xx / unreachable      -> counts towards its circuit breaker, next candidate
        timeout                -> counts too; the request is NOT re-sent (the instance may have
                                  done the work): its prompt is billed, the caller gets 504
        401/403/404/no token   -> misconfigured for a while, next candidate
        400 about a setting    -> next candidate; the caller gets 502 naming the setting
        400 about the caller   -> 400 at once
    nothing left to try:
        the soonest instance is back within what remains of Gateway:MaxWaitSeconds and its
        MaxRetries allow -> wait for it and try again;
        else 429 (some are cooling) or 503, with Retry-After = the soonest recovery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from typing import TypeVar

from ._conversation import DEFAULT_CONTEXT_TOKENS, truncate, with_system_prompt
from ._errors import (
    GatewayError,
    RateLimited,
    UpstreamError,
    UpstreamMisconfigured,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ._health import Health
from ._routing import Router
from ._tokens import count_prompt
from ._values import ChatMessage, Completion, Method, Usage
from .config import Settings
from .telemetry import Attempt, GatewayMetrics, Tracing
from .upstream import StreamEvent, Upstream, UpstreamStream

log = logging.getLogger("core.failover")

T = TypeVar("T")
Call = Callable[[Upstream, tuple[ChatMessage, ...], Attempt], Awaitable[T]]  # the attempt's span last
Bill = Callable[[str, Method, Completion], None]  # (tenant, method, what it cost)


class Failover:
    def __init__(
        self,
        settings: Settings,
        upstreams: Mapping[str, Upstream],
        router: Router,
        health: Health,
        metrics: GatewayMetrics,
        bill: Bill,
        tracing: Tracing | None = None,
    ) -> None:
        self._settings = settings
        self._gateway = settings.gateway
        self._upstreams = upstreams
        self._router = router
        self._health = health
        self._metrics = metrics
        self._bill = bill
        self._tracing = tracing or Tracing()

    async def run(
        self, tenant: str, method: Method, messages: Sequence[ChatMessage], call: Call[T],
        *, among: Collection[str] | None = None,
    ) -> T:
        """``call`` on the first instance that answers, trying the candidates in order, then
        waiting (within ``Gateway:MaxWaitSeconds``) for the soonest to recover.

        ``messages`` empty: the caller sends its own body (the compatible API), no prompt is
        prepared. ``among`` narrows the instances to those serving the request's deployment.
        """
        pinned = self._router.pinned(tenant, among)
        if pinned is not None and pinned not in self._upstreams:
            raise UpstreamUnavailable(
                f"tenant '{tenant}' is mapped to instance '{pinned}', which has no endpoint or "
                f"credentials configured (AzureOpenAI:Services:{pinned})"
            )
        if not self._upstreams:
            raise UpstreamUnavailable(
                "no Azure OpenAI instance is configured; set AzureOpenAI:Services:<Name>:Endpoint"
            )
        with_prompt = with_system_prompt(messages, self._settings.azure_openai.system_prompt) if messages else ()
        context = self._settings.chat_completions_options.max_tokens or DEFAULT_CONTEXT_TOKENS
        prompts: dict[int, tuple[ChatMessage, ...]] = {}  # by budget: truncate once per budget
        deadline = time.monotonic() + self._gateway.max_wait_seconds
        tried: set[str] = set()
        retries: dict[str, int] = {}
        last: GatewayError | None = None
        while True:
            for name in await self._router.candidates(tenant, among):
                if name in tried or not self._health.begin(name):
                    continue
                tried.add(name)
                upstream = self._upstreams[name]
                budget = context - upstream.settings.max_response_tokens
                if budget not in prompts:
                    prompts[budget] = truncate(with_prompt, budget) if with_prompt else ()
                try:
                    with self._tracing.attempt(
                        "embeddings" if method == "embeddings" else "chat", tenant=tenant, instance=name,
                        model=upstream.settings.model, endpoint=upstream.settings.endpoint, attempt=len(tried),
                        prompt=prompts[budget],
                    ) as span:  # failover attempts are sibling client spans under the request's span
                        result = await call(upstream, prompts[budget], span)
                except UpstreamTimeout:
                    self._timed_out(name, tenant, method, prompts[budget])
                    raise
                except (RateLimited, UpstreamError) as exc:
                    last = self._failed(name, exc)
                    continue
                finally:
                    self._health.end(name)
                self._health.succeeded(name)
                return result
            target, wait = self._soonest(tenant, tried, among)
            remaining = deadline - time.monotonic()
            if target is None or wait > remaining or retries.get(target, 0) >= self._max_retries(target):
                raise self._exhausted(tenant, last, among)
            retries[target] = retries.get(target, 0) + 1
            self._metrics.retries.labels(target.lower()).inc()
            await asyncio.sleep(wait)
            tried.discard(target)

    def _failed(self, name: str, exc: GatewayError) -> GatewayError:
        """Record what the failure says about the instance; the error to report if nothing works."""
        label = name.lower()
        if isinstance(exc, RateLimited):
            seconds = self._cooldown(exc.retry_after)
            self._health.cool_down(name, seconds)
            self._metrics.cooldown_seconds.labels(label).observe(seconds)
            reason = "rate_limited"
        elif isinstance(exc, UpstreamMisconfigured):
            if exc.instance_fault:
                self._health.misconfigure(name, self._gateway.misconfigured_seconds, exc.detail)
            self._metrics.misconfigured.labels(label, exc.setting).inc()
            reason = "misconfigured"
        else:
            if exc.retry_after is not None:  # a 503 that says when to come back
                seconds = self._cooldown(exc.retry_after)
                self._health.cool_down(name, seconds)
                self._metrics.cooldown_seconds.labels(label).observe(seconds)
            if self._health.failed(name):
                log.warning("instance %s: circuit opened after %d failures", name,
                            self._gateway.circuit_breaker.failures)
            reason = "unavailable" if isinstance(exc, UpstreamUnavailable) else "error"
        self._metrics.upstream_failures.labels(label, reason).inc()
        self._metrics.failovers.labels(label, reason).inc()
        log.warning("instance %s failed (%s): %s", name, reason, exc.detail)
        return exc

    def _timed_out(self, name: str, tenant: str, method: Method, prompt: tuple[ChatMessage, ...]) -> None:
        """Count the timeout towards the breaker and bill the prompt: the instance may have done the work."""
        label = name.lower()
        self._metrics.upstream_failures.labels(label, "timeout").inc()
        if self._health.failed(name):
            log.warning("instance %s: circuit opened after %d failures (timeouts count)", name,
                        self._gateway.circuit_breaker.failures)
        self._bill(tenant, method, Completion("", name, Usage(count_prompt(prompt), 0), False))

    def watch(self, name: str, stream: UpstreamStream) -> UpstreamStream:
        """``stream``, reporting a failure after the first byte (a stall, a drop) to the breaker."""
        return _WatchedStream(stream, lambda exc: self.broke_mid_stream(name, exc))

    def broke_mid_stream(self, name: str, exc: UpstreamError) -> None:
        """A stream of ``name`` failed after its first byte: counted, and a failure for the breaker."""
        reason = "timeout" if isinstance(exc, UpstreamTimeout) else "stream"
        self._metrics.upstream_failures.labels(name.lower(), reason).inc()
        if self._health.failed(name):
            log.warning("instance %s: circuit opened after %d failures (mid-stream)", name,
                        self._gateway.circuit_breaker.failures)

    def _cooldown(self, asked: float | None) -> float:
        seconds = self._gateway.unhealthy_cooldown_seconds if asked is None else asked
        return min(seconds, self._gateway.max_cooldown_seconds)

    def _max_retries(self, name: str) -> int:
        return self._upstreams[name].settings.max_retries

    def _soonest(
        self, tenant: str, tried: set[str], among: Collection[str] | None
    ) -> tuple[str | None, float]:
        """The instance of the tenant's pool that is back first (not misconfigured), and when."""
        best: tuple[str | None, float] = (None, float("inf"))
        for name in self._router.pool(tenant, among):
            if name not in self._upstreams or self._health.state(name) == "misconfigured":
                continue
            wait = self._health.recovery_in(name)
            if name in tried and wait == 0.0:
                continue  # already failed this request and nothing says it has changed
            if wait < best[1]:
                best = (name, wait)
        return best

    def _exhausted(self, tenant: str, last: GatewayError | None, among: Collection[str] | None) -> GatewayError:
        pool = [n for n in self._router.pool(tenant, among) if n in self._upstreams]
        waits = [self._health.recovery_in(n) for n in pool]
        soonest = min((w for w in waits if w > 0), default=None)
        states = {n: self._health.state(n) for n in pool}
        if isinstance(last, UpstreamMisconfigured) and not any(s == "cooling" for s in states.values()):
            return last
        if last is None and len(pool) == 1 and states[pool[0]] == "misconfigured":
            return UpstreamMisconfigured(self._health.misconfigured_detail(pool[0]), instance=pool[0],
                                         setting=f"AzureOpenAI:Services:{pool[0]}")
        summary = ", ".join(f"{n} {s}" for n, s in states.items())
        if isinstance(last, RateLimited) or "cooling" in states.values():
            return RateLimited(f"Azure OpenAI is rate limited for tenant '{tenant}' ({summary}); "
                               "retry after the time in Retry-After", soonest)
        if last is not None and not isinstance(last, UpstreamUnavailable) and soonest is None:
            return last
        return UpstreamUnavailable(f"no Azure OpenAI instance can serve tenant '{tenant}' now ({summary})",
                                   soonest)


class _WatchedStream:
    def __init__(self, stream: UpstreamStream, on_failure: Callable[[UpstreamError], None]) -> None:
        self._stream = stream
        self._on_failure = on_failure

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        try:
            async for event in self._stream:
                yield event
        except UpstreamError as exc:
            self._on_failure(exc)
            raise

    async def aclose(self) -> None:
        await self._stream.aclose()
