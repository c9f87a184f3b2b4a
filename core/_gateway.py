"""The gateway: route, call Azure OpenAI with failover, count every token per tenant."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
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
from ._conversation import DEFAULT_CONTEXT_TOKENS, parse_conversation, with_system_prompt
from ._errors import GatewayError, NotFound, RateLimited, UpstreamTimeout, UpstreamUnavailable
from ._failover import Failover
from ._health import Health
from ._routing import Router
from ._stream import ChatStream
from ._tokens import OFF_LOOP_BYTES, byte_bound, count_prompt, count_prompt_async, count_text
from ._values import Budget, ChatMessage, Completion, Method, Usage
from .access import Authenticator, Credentials
from .config import Settings
from .ledger import GroupBy, Ledger, LedgerUnavailable, UsageLine
from .limits import Limiter, QuotaKeeper, QuotaTicket, Ticket
from .state import StateStore
from .telemetry import Attempt, GatewayMetrics, Tracing
from .upstream import Operation, Relay, Upstream

log = logging.getLogger("core.gateway")
_Answer = TypeVar("_Answer", Completion, RelayResponse)


class Background(Protocol):
    """Something that runs beside the gateway (the metrics pusher)."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class Hold:
    """What one request holds against its tenant's limits and quotas until it is settled."""

    limits: Ticket | None = None
    quota: QuotaTicket | None = None


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
        authenticator: Authenticator | None = None,
        limiter: Limiter | None = None,
        quotas: QuotaKeeper | None = None,
        relays: Mapping[str, Relay] | None = None,
        ledger: Ledger | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._metrics = metrics
        self._upstreams = dict(upstreams)
        self._reply_by_mapping: dict[str, int] = {}  # see _reply_tokens
        self._router = router
        self._health = health
        self._tracing = tracing or Tracing()
        self._failover = Failover(settings, self._upstreams, router, health, metrics, self._bill, self._tracing)
        metrics.watch_instances(lambda: {n: health.state(n) for n in health.names})
        self._store = store
        self._background = tuple(background)
        self._authenticator = authenticator or Authenticator()
        self._limiter = limiter
        self._quotas = quotas
        self._counting = ThreadPoolExecutor(1, thread_name_prefix="token-count")  # big prompts, one at a time
        self._relays = dict(relays or {})
        self._catalog = DeploymentCatalog(settings, self._relays)
        self._ledger = ledger
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
        if self._limiter is not None:
            await self._limiter.start()
        if self._authenticator.trusts_callers:  # said once the host has started, not when settings fail
            log.warning("Auth:Mode is none: any caller can claim any tenant (query, X-Tenant, unverified JWT) "
                        "and be billed as it; set Auth:Mode to jwt, keys or jwt,keys outside local runs")

    async def authenticate(self, credentials: Credentials) -> str:
        """The request's tenant under ``Auth:Mode`` (see ``core.access``); raises
        Unauthenticated / Forbidden / InvalidRequest / AuthUnavailable."""
        return await self._authenticator.authenticate(credentials)

    def authorize_metrics(self, authorization: str | None) -> None:
        """Raises Unauthenticated unless ``Auth:MetricsKey`` is unset or sent as a bearer key."""
        self._authenticator.authorize_metrics(authorization)

    def echo(self, tenant: str, value: int) -> str:
        return f"tenant: {tenant} value: {value}"

    async def chat(self, tenant: str, messages: Sequence[ChatMessage]) -> Completion:
        async def call(upstream: Upstream, prompt: tuple[ChatMessage, ...], span: Attempt) -> Completion:
            reply = await upstream.complete(prompt)
            usage = reply.usage or Usage(count_prompt(prompt), count_text(reply.text))
            completion = Completion(reply.text, upstream.name, usage, reply.usage is not None)
            span.finish(completion, reply.model, reply.finish_reasons)
            return completion

        ticket = await self._admit(tenant, messages)
        with self._refund_on_failure(tenant, ticket):
            completion = await self._failover.run(tenant, "chat", messages, call)
        self._bill(tenant, "chat", completion, ticket)
        return self._budgeted(tenant, completion)

    async def open_stream(self, tenant: str, messages: Sequence[ChatMessage]) -> ChatStream:
        async def call(upstream: Upstream, prompt: tuple[ChatMessage, ...], span: Attempt) -> ChatStream:
            stream = self._failover.watch(upstream.name, await upstream.open_stream(prompt))
            span.hand_over()  # the attempt's span ends with the stream
            return ChatStream(upstream.name, prompt, stream, lambda done: self._bill(tenant, "stream", done, ticket),
                              span)

        ticket = await self._admit(tenant, messages)
        with self._refund_on_failure(tenant, ticket):
            opened = await self._failover.run(tenant, "stream", messages, call)
        opened.budget = self.budget(tenant)
        return opened

    def budget(self, tenant: str) -> Budget | None:
        """What ``tenant`` may still use in the current window; None when it has no limits."""
        return self._limiter.budget(tenant) if self._limiter is not None else None

    def _budgeted(self, tenant: str, answer: _Answer) -> _Answer:
        """``answer`` with the tenant's remaining budget (itself when the tenant has no limits)."""
        budget = self.budget(tenant)
        return answer if budget is None else answer.with_budget(budget)  # not dataclasses.replace: half the cost

    def _bill(self, tenant: str, method: Method, completion: Completion, ticket: Hold | None = None) -> None:
        """The one place a finished chat or stream (or a timed-out call's prompt) is accounted for:
        metrics, then its limits. ``completion.usage_reported`` says whether Azure counted the tokens
        or the gateway did."""
        self._metrics.record(completion.instance, tenant, method, completion.usage, completion.usage_reported)
        if ticket is not None:
            self._settle(ticket, completion.usage.total_tokens)
        if self._ledger is not None:
            service = self._upstreams[completion.instance].settings
            self._ledger.record(tenant, completion.instance, service.deployment, service.model,
                                completion.usage, completion.usage_reported)

    async def _admit(self, tenant: str, messages: Sequence[ChatMessage]) -> Hold | None:
        """Hold the request's estimate against the tenant's limits, or raise RateLimited: prompt +
        MaxResponseTokens of its own instance (else the largest), at most the context. Big prompts
        (of any tenant) are counted on the counting thread, and the count is remembered for
        truncation, so it never runs on the event loop."""
        prompt = with_system_prompt(messages, self._settings.azure_openai.system_prompt)
        if not self._held(tenant):
            if byte_bound(prompt) > OFF_LOOP_BYTES:
                await count_prompt_async(prompt, self._counting)
            return None
        reply = self._reply_tokens(tenant)
        context = self._settings.chat_completions_options.max_tokens or DEFAULT_CONTEXT_TOKENS

        async def estimate() -> int:
            return min(await count_prompt_async(prompt, self._counting) + reply, max(context, reply))

        return await self._hold(tenant, estimate)

    def _reply_tokens(self, tenant: str) -> int:
        """MaxResponseTokens of the tenant's own instance, else the largest (settings do not change:
        kept per mapped instance name, a handful)."""
        mapped = self._settings.tenant_azure_openai_mappings.get(tenant, "")
        reply = self._reply_by_mapping.get(mapped)
        if reply is None:
            own = self._settings.service_named(mapped)
            reply = self._reply_by_mapping[mapped] = own[1].max_response_tokens if own else max(
                (u.settings.max_response_tokens for u in self._upstreams.values()), default=0)
        return reply

    def _held(self, tenant: str) -> bool:
        """True when the tenant has limits or quotas (its requests hold an estimate)."""
        return (self._limiter is not None and self._limiter.limits(tenant).limited) or (
            self._quotas is not None and self._quotas.applies(tenant))

    async def _hold(self, tenant: str, estimate: Callable[[], Awaitable[int]]) -> Hold | None:
        """The tenant's limits, then its day / month quotas, admit ``await estimate()`` tokens
        (computed only when the tenant has any), or raise :class:`RateLimited`."""
        if not self._held(tenant):
            return None
        tokens = await estimate()
        hold = Hold()
        try:
            if self._limiter is not None and self._limiter.limits(tenant).limited:
                hold.limits = await self._limiter.admit(tenant, tokens)
            if self._quotas is not None:
                hold.quota = await self._quotas.admit(tenant, tokens)
        except GatewayError as exc:
            self._release(hold)
            if isinstance(exc, RateLimited):
                self._tracing.limited(tenant)
            exc.budget = exc.budget or self.budget(tenant)
            raise
        return hold

    def _settle(self, hold: Hold, used: int) -> None:
        if self._limiter is not None and hold.limits is not None:
            self._limiter.settle(hold.limits, used)
        if self._quotas is not None:
            self._quotas.settle(hold.quota, used)

    def _release(self, hold: Hold | None) -> None:
        if hold is None:
            return
        if self._limiter is not None and hold.limits is not None:
            self._limiter.release(hold.limits)
        if self._quotas is not None:
            self._quotas.release(hold.quota)

    def _refund_on_failure(self, tenant: str, ticket: Hold | None) -> _RefundOnFailure:
        """A request that fails gives its estimate back (kept when the upstream may have worked:
        timeouts, callers gone); its error carries the tenant's budget for the hosts' headers."""
        return _RefundOnFailure(self, tenant, ticket)

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

        async def estimate() -> int:  # messages / input + max_tokens, read from the caller's body
            return request.estimate()

        ticket = await self._hold(tenant, estimate)

        async def call(upstream: Upstream, _: tuple[ChatMessage, ...], span: Attempt) -> RelayResponse:
            response = await self._relay_once(tenant, request, upstream.name, serving[upstream.name], api_version,
                                              ticket)
            if response.usage is not None:
                span.finish(Completion("", upstream.name, response.usage, True))
            return response

        with self._refund_on_failure(tenant, ticket):
            response = await self._failover.run(tenant, request.method, (), call, among=frozenset(serving))
        if response.status >= 300:
            self._release(ticket)  # the caller's own 4xx: nothing was generated
        return self._budgeted(tenant, response)

    async def _relay_once(
        self, tenant: str, request: RelayRequest, name: str, own: str, api_version: str | None, ticket: Hold | None
    ) -> RelayResponse:
        relay = self._relays[name]
        if request.stream:
            stream = await relay.open_stream(own, request.operation, request.body_for(own), api_version=api_version,
                                             keep_usage_event=not request.usage_added)
            if stream.status >= 300:  # the caller's 4xx, whole
                try:
                    body = b"".join([part async for part in stream])
                finally:
                    await stream.aclose()
                return RelayResponse(stream.status, stream.headers, name, body=body)
            relayed = RelayedStream(name, request, stream, lambda done: self._bill(tenant, "stream", done, ticket),
                                    lambda exc: self._failover.broke_mid_stream(name, exc))
            return RelayResponse(stream.status, stream.headers, name, stream=relayed)
        reply = await relay.post(own, request.operation, request.body_for(own), api_version=api_version)
        if reply.status >= 300:
            return RelayResponse(reply.status, reply.headers, name, body=reply.body)
        usage = reply.usage or fallback_usage(request, reply.body)
        self._bill(tenant, request.method, Completion("", name, usage, reply.usage is not None), ticket)
        return RelayResponse(reply.status, reply.headers, name, body=reply.body, usage=usage)

    async def usage(
        self, credentials: Credentials, start: datetime, end: datetime, group_by: GroupBy = "day"
    ) -> list[UsageLine]:
        """The ledger's lines in ``[start, end)`` summed per period, for whom the caller may read:
        an admin any tenant (or all), a tenant its own (see ``Authenticator.usage_scope``)."""
        tenant = await self._authenticator.usage_scope(credentials)
        if self._ledger is None:
            raise NotFound("the usage ledger is disabled (Ledger:Enabled is false)")
        try:
            return await self._ledger.usage(tenant, start, end, group_by)
        except LedgerUnavailable as exc:
            raise UpstreamUnavailable(f"the usage ledger cannot be read now ({exc.detail}); retry shortly") from None

    async def aclose(self) -> None:
        for task in self._background:
            await task.aclose()
        if self._limiter is not None:
            await self._limiter.aclose()
        await asyncio.gather(*(u.aclose() for u in self._upstreams.values()),
                             *(r.aclose() for r in self._relays.values()))
        await self._authenticator.aclose()
        self._counting.shutdown(wait=False, cancel_futures=True)
        await self._store.aclose()


class _RefundOnFailure:
    """:meth:`Gateway._refund_on_failure`'s block (a plain class: no generator per request)."""

    __slots__ = ("_gateway", "_tenant", "_ticket")

    def __init__(self, gateway: Gateway, tenant: str, ticket: Hold | None) -> None:
        self._gateway = gateway
        self._tenant = tenant
        self._ticket = ticket

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: object) -> None:
        if isinstance(error, GatewayError):
            if not isinstance(error, UpstreamTimeout):
                self._gateway._release(self._ticket)
            error.budget = self._gateway.budget(self._tenant)
