"""``POST /openai/deployments/{deployment}/chat/completions``: auth, limits, faults, completions."""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from dataclasses import dataclass

from aiohttp import web

from simulator import _azure as azure
from simulator._config import DeploymentConfig, FaultSpec, SimulatorConfig
from simulator._faults import FaultQueue
from simulator._ratelimit import Admission, SlidingWindowLimiter
from simulator._request import ChatRequest, InvalidRequest, parse_chat_request
from simulator._stats import StatsRecorder
from simulator._stream import StreamPlan, write_stream
from simulator._text import Completion, TextGenerator, TokenCounter, completion_key


class Dropped(Exception):
    """The connection was closed on purpose (fault injection)."""


@dataclass(frozen=True, slots=True)
class _Planned:
    request: ChatRequest
    prompt_tokens: int
    completions: list[Completion]

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.completions)


class ChatService:
    """Serves chat completions for the deployments of one simulated instance."""

    def __init__(self, config: SimulatorConfig, stats: StatsRecorder, faults: FaultQueue) -> None:
        self._config = config
        self._stats = stats
        self._faults = faults
        self._counter = TokenCounter()
        self._generator = TextGenerator(
            self._counter, config.min_completion_tokens, config.max_completion_tokens
        )
        self._limiters = {d.name: SlidingWindowLimiter(d.tpm, d.rpm) for d in config.deployments}

    def reset_limits(self) -> None:
        for limiter in self._limiters.values():
            limiter.reset()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["deployment"]
        deployment = self._config.deployment(name)
        known = name if deployment is not None else None
        self._stats.request(known, request.headers.get("traceparent"))
        try:
            response = await self._handle(request, name, deployment)
        except Dropped:
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPNoContent() from None  # never written: the connection is gone
        if not response.prepared:
            self._stats.status(known, response.status)
        return response

    async def _handle(
        self, request: web.Request, name: str, deployment: DeploymentConfig | None
    ) -> web.StreamResponse:
        api_version = request.query.get("api-version", "")
        if not api_version:
            return azure.error_response(404, "404", azure.MSG_NO_API_VERSION)
        if not self._authorized(request):
            return azure.error_response(401, "401", azure.MSG_UNAUTHORIZED)
        if deployment is None:
            return azure.error_response(404, "DeploymentNotFound", azure.MSG_DEPLOYMENT_NOT_FOUND)
        try:
            chat = parse_chat_request(await request.read())
        except InvalidRequest as exc:
            return azure.bad_request(str(exc), exc.param)
        fault = self._faults.take(name) if self._faults else None
        drop_after: int | None = None
        if fault is not None:
            self._stats.fault(name)
            faulted = await self._apply_fault(fault, chat, api_version)
            if faulted is not None:
                return faulted
            drop_after = fault.drop_after_chunks if fault.drop else None
        plan = self._plan(chat)
        limiter = self._limiters[name]
        estimate = plan.prompt_tokens + (
            chat.max_tokens * chat.n if chat.max_tokens is not None else plan.completion_tokens
        )
        admission = limiter.admit(estimate)
        headers = _limit_headers(admission)
        if not admission.allowed:
            headers.update(azure.retry_headers(admission.retry_after_ms))
            message = azure.throttled_message(api_version, admission.exceeded, admission.retry_after_ms)
            return azure.error_response(429, "429", message, headers=headers)
        return await self._respond(request, deployment, plan, headers, drop_after)

    async def _apply_fault(
        self, fault: FaultSpec, chat: ChatRequest, api_version: str
    ) -> web.Response | None:
        """Delay, then answer with the fault's status or drop; None = carry on normally."""
        if fault.delay_ms > 0:
            await asyncio.sleep(fault.delay_ms / 1000)
        if fault.status is not None:
            return azure.fault_response(fault.status, fault.retry_after_ms, api_version)
        if fault.drop and (not chat.stream or fault.drop_after_chunks is None):
            raise Dropped()
        return None

    def _authorized(self, request: web.Request) -> bool:
        key = request.headers.get("api-key")
        if key is not None:
            return hmac.compare_digest(key.encode(), self._config.api_key.encode())
        auth = request.headers.get("Authorization", "")
        return self._config.accept_bearer and auth[:7].lower() == "bearer " and bool(auth[7:].strip())

    def _plan(self, chat: ChatRequest) -> _Planned:
        seed = self._config.seed
        completions = [
            self._generator.generate(
                completion_key(seed, chat.seed, chat.messages, i), chat.max_tokens, chat.stop
            )
            for i in range(chat.n)
        ]
        return _Planned(chat, self._counter.prompt_tokens(chat.messages), completions)

    async def _respond(
        self,
        request: web.Request,
        deployment: DeploymentConfig,
        plan: _Planned,
        headers: dict[str, str],
        drop_after: int | None,
    ) -> web.StreamResponse:
        request_id = secrets.token_hex(16)
        headers["x-request-id"] = headers["apim-request-id"] = request_id
        ident, created = f"chatcmpl-{request_id[:24]}", int(time.time())
        latency = self._config.effective_latency_ms
        per_token = self._config.effective_per_token_latency_ms
        if plan.request.stream:
            if latency > 0:
                await asyncio.sleep(latency / 1000)
            stream = StreamPlan(
                ident,
                created,
                deployment.model,
                plan.prompt_tokens,
                plan.completions,
                plan.request.include_usage,
            )
            return await self._stream(request, deployment.name, stream, headers, drop_after)
        delay = latency + per_token * plan.completion_tokens
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        usage = azure.usage(plan.prompt_tokens, plan.completion_tokens)
        choices = [(c.text, c.finish_reason) for c in plan.completions]
        body = azure.completion_body(
            ident, created, deployment.model, choices, usage, self._config.content_filter
        )
        self._stats.usage(deployment.name, plan.prompt_tokens, plan.completion_tokens, reported=True)
        return web.Response(body=azure.dumps(body), content_type="application/json", headers=headers)

    async def _stream(
        self,
        request: web.Request,
        name: str,
        stream: StreamPlan,
        headers: dict[str, str],
        drop_after: int | None,
    ) -> web.StreamResponse:
        headers["Cache-Control"] = "no-cache"
        response = web.StreamResponse(headers=headers)
        response.content_type = "text/event-stream"
        response.charset = "utf-8"
        try:
            await response.prepare(request)
        except ConnectionError:  # the client left before the headers went out
            self._stats.aborted(name)
            return response
        self._stats.status(name, 200)

        def completed(reported: bool) -> None:
            self._stats.usage(name, stream.prompt_tokens, stream.completion_tokens, reported)

        outcome = await write_stream(
            response,
            stream,
            content_filter=self._config.content_filter,
            per_token_ms=self._config.effective_per_token_latency_ms,
            drop_after=drop_after,
            on_complete=completed,
        )
        if outcome != "complete":
            self._stats.aborted(name)
        if outcome == "drop" and request.transport is not None:
            request.transport.abort()
        return response


def _limit_headers(admission: Admission) -> dict[str, str]:
    headers: dict[str, str] = {}
    if admission.remaining_tokens is not None:
        headers["x-ratelimit-remaining-tokens"] = str(admission.remaining_tokens)
    if admission.remaining_requests is not None:
        headers["x-ratelimit-remaining-requests"] = str(admission.remaining_requests)
    return headers
