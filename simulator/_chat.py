"""``POST /openai/deployments/{deployment}/chat/completions``: auth, limits, faults, completions."""

from __future__ import annotations

import asyncio
import hmac
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from simulator import _azure as azure
from simulator._config import DeploymentConfig, FaultSpec, SimulatorConfig
from simulator._embeddings import parse_embeddings_request
from simulator._embeddings import prompt_tokens as embedding_tokens
from simulator._embeddings import response_body as embeddings_body
from simulator._faults import FaultQueue
from simulator._ratelimit import Admission, SlidingWindowLimiter
from simulator._request import ChatRequest, InvalidRequest, parse_chat_request
from simulator._responses import response_object, stream_events, to_chat
from simulator._stats import StatsRecorder
from simulator._stream import StreamPlan, write_stream
from simulator._text import Completion, TextGenerator, TokenCounter, completion_key
from simulator._tools import check_tools, formatted, tool_call

_Handler = Callable[[web.Request, str, DeploymentConfig | None], Awaitable[web.StreamResponse]]


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
        return await self._serve(request, self._handle)

    async def handle_embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._embeddings)

    async def handle_responses(self, request: web.Request) -> web.StreamResponse:
        """The Responses API: the deployment is the body's ``model``."""
        if not self._authorized(request):
            self._stats.request(None)
            self._stats.status(None, 401)
            return azure.error_response(401, "401", azure.MSG_UNAUTHORIZED)
        try:
            name, body = to_chat(orjson.loads(await request.read()))
            chat = parse_chat_request(orjson.dumps(body))
        except orjson.JSONDecodeError:
            return azure.bad_request("We could not parse the JSON body of your request.")
        except InvalidRequest as exc:
            return azure.bad_request(str(exc), exc.param)
        deployment = self._config.deployment(name)
        known = name if deployment is not None else None
        self._stats.request(known)
        response = await self._responses(request, chat, deployment)
        self._stats.status(known, response.status)
        return response

    async def _responses(
        self, request: web.Request, chat: ChatRequest, deployment: DeploymentConfig | None
    ) -> web.StreamResponse:
        if deployment is None:
            return azure.error_response(404, "DeploymentNotFound", azure.MSG_DEPLOYMENT_NOT_FOUND)
        api_version = request.query.get("api-version", "v1")
        fault = self._faults.take(deployment.name) if self._faults else None
        if fault is not None:
            self._stats.fault(deployment.name)
            faulted = await self._apply_fault(fault, False, api_version)
            if faulted is not None:
                return faulted
        plan = self._plan(chat)
        admission = self._limiters[deployment.name].admit(plan.prompt_tokens + plan.completion_tokens)
        headers = _limit_headers(admission)
        if not admission.allowed:
            headers.update(azure.retry_headers(admission.retry_after_ms))
            message = azure.throttled_message(api_version, admission.exceeded, admission.retry_after_ms)
            return azure.error_response(429, "429", message, headers=headers)
        headers["x-request-id"] = request_id = secrets.token_hex(16)
        ident, created, text = f"resp_{request_id}", int(time.time()), plan.completions[0].text
        prompt, completion = plan.prompt_tokens, plan.completions[0].completion_tokens
        self._stats.usage(deployment.name, prompt, completion, reported=True)
        if chat.stream:
            events = stream_events(ident, created, deployment.model, text, prompt, completion)
            return web.Response(body=events, content_type="text/event-stream", headers=headers)
        body = response_object(ident, created, deployment.model, text, prompt, completion)
        return web.Response(body=azure.dumps(body), content_type="application/json", headers=headers)

    async def _serve(self, request: web.Request, inner: _Handler) -> web.StreamResponse:
        name = request.match_info["deployment"]
        deployment = self._config.deployment(name)
        known = name if deployment is not None else None
        self._stats.request(known, request.headers.get("traceparent"))
        try:
            response = await inner(request, name, deployment)
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
            check_tools(chat.body)
        except InvalidRequest as exc:
            return azure.bad_request(str(exc), exc.param)
        fault = self._faults.take(name) if self._faults else None
        drop_after: int | None = None
        stall: tuple[int, float] | None = None
        if fault is not None:
            self._stats.fault(name)
            faulted = await self._apply_fault(fault, chat.stream, api_version)
            if faulted is not None:
                return faulted
            drop_after = fault.drop_after_chunks if fault.drop else None
            stall = (fault.stall_after_chunks, fault.stall_ms) if fault.stall_ms and chat.stream else None
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
        return await self._respond(request, deployment, plan, headers, drop_after, stall)

    async def _embeddings(
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
            embeddings = parse_embeddings_request(await request.read())
        except InvalidRequest as exc:
            return azure.bad_request(str(exc), exc.param)
        fault = self._faults.take(name) if self._faults else None
        if fault is not None:
            self._stats.fault(name)
            faulted = await self._apply_fault(fault, False, api_version)
            if faulted is not None:
                return faulted
        tokens = embedding_tokens(self._counter, embeddings)
        admission = self._limiters[name].admit(tokens)
        headers = _limit_headers(admission)
        if not admission.allowed:
            headers.update(azure.retry_headers(admission.retry_after_ms))
            message = azure.throttled_message(api_version, admission.exceeded, admission.retry_after_ms)
            return azure.error_response(429, "429", message, headers=headers)
        headers["x-request-id"] = headers["apim-request-id"] = secrets.token_hex(16)
        if self._config.effective_latency_ms > 0:
            await asyncio.sleep(self._config.effective_latency_ms / 1000)
        body = embeddings_body(embeddings, deployment.model, tokens)
        self._stats.usage(name, tokens, 0, reported=True)
        return web.Response(body=azure.dumps(body), content_type="application/json", headers=headers)

    async def _apply_fault(
        self, fault: FaultSpec, stream: bool, api_version: str
    ) -> web.Response | None:
        """Delay, then answer with the fault's status or drop; None = carry on normally."""
        if fault.delay_ms > 0:
            await asyncio.sleep(fault.delay_ms / 1000)
        if fault.status is not None:
            return azure.fault_response(fault.status, fault.retry_after_ms, api_version, fault.retry_style)
        if fault.stall_ms > 0 and not stream:
            await asyncio.sleep(fault.stall_ms / 1000)
        if fault.drop and (not stream or fault.drop_after_chunks is None):
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
        tools, choice, fmt = check_tools(chat.body)
        completions = []
        for i in range(chat.n):
            key = completion_key(seed, chat.seed, chat.messages, i)
            text = self._generator.generate(key, chat.max_tokens, chat.stop)
            completions.append(self._shaped(text, key, chat.messages, tools, choice, fmt))
        prompt = self._counter.prompt_tokens(chat.messages)
        if tools:  # function definitions count as prompt (approximately, as the service does)
            prompt += self._counter.count(orjson.dumps(tools).decode())
        return _Planned(chat, prompt, completions)

    def _shaped(self, text: Completion, key: bytes, messages: list[dict[str, Any]],
                tools: tuple[dict[str, Any], ...], choice: Any, fmt: Any) -> Completion:
        """The completion as tools / response_format make it: a tool call, JSON, or the text."""
        if not tools and fmt is None:
            return text
        rng = random.Random(key)
        call = tool_call(tools, choice, messages, rng)
        if call is not None:
            tokens = self._counter.count(call.name) + self._counter.count(call.arguments)
            return Completion("", tokens, "tool_calls", call)
        content = formatted(fmt, text.text, rng)
        if content == text.text:
            return text
        return Completion(content, self._counter.count(content), text.finish_reason)

    async def _respond(
        self,
        request: web.Request,
        deployment: DeploymentConfig,
        plan: _Planned,
        headers: dict[str, str],
        drop_after: int | None,
        stall: tuple[int, float] | None = None,
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
            return await self._stream(request, deployment.name, stream, headers, drop_after, stall)
        delay = latency + per_token * plan.completion_tokens
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        usage = azure.usage(plan.prompt_tokens, plan.completion_tokens)
        body = azure.completion_body(
            ident, created, deployment.model, plan.completions, usage, self._config.content_filter
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
        stall: tuple[int, float] | None,
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
            stall=stall,
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
