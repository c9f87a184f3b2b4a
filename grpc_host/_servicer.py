"""``OpenAiRestApi.OpenAIServiceGrpc``: translates protobuf messages to core calls and back.

Nothing here decides anything: tenant resolution, validation, routing, token accounting and
errors are the core's; this module only maps them onto the C# sample's gRPC contract.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import NoReturn, TypeVar

import grpc

from core import ChatMessage, Completion, Credentials, Gateway, GatewayError
from protos import openai_pb2, openai_pb2_grpc

from ._status import failure_for

log = logging.getLogger("grpc_host")

T = TypeVar("T")
ROUTE_PREFIX = openai_pb2.DESCRIPTOR.services_by_name["OpenAIServiceGrpc"].full_name


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str | None:
    """The first value of ``key`` (gRPC lower-cases metadata keys)."""
    for item in context.invocation_metadata() or ():
        if item.key == key and isinstance(item.value, str):
            return item.value
    return None


def _credentials(field: str, context: grpc.aio.ServicerContext) -> Credentials:
    """``authorization`` / ``api-key`` metadata, and the tenant the request field or ``x-tenant`` claims.

    An empty request field means "not given" (proto3 strings cannot be absent)."""
    return Credentials(
        authorization=_metadata(context, "authorization"),
        api_key=_metadata(context, "api-key"),
        tenant_query=field or None,
        tenant_header=_metadata(context, "x-tenant"),
        query_source="the request's 'tenant' field",
        header_source="the x-tenant metadata",
    )


def _conversation(gateway: Gateway, messages: Iterable[openai_pb2.GrpcMessage]) -> tuple[ChatMessage, ...]:
    """Validate exactly as REST does: build the JSON body REST would receive, then parse it."""
    return gateway.conversation([{"role": m.role, "content": m.content} for m in messages])


async def _abort(context: grpc.aio.ServicerContext, method: str, error: GatewayError) -> NoReturn:
    failure = failure_for(error)
    log.warning("%s failed: %s %s", method, failure.code.name, failure.details)
    await context.abort(failure.code, failure.details, trailing_metadata=failure.trailers)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


async def _internal(context: grpc.aio.ServicerContext, method: str) -> NoReturn:
    log.exception("%s failed with an unexpected error", method)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"{method} failed unexpectedly; the gateway logged the cause. Retry, and report it if it persists.",
    )
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def _usage_trailers(completion: Completion) -> tuple[tuple[str, str], ...]:
    """What REST sends as X-Gateway-Instance / X-*-Tokens / x-ratelimit-* headers, as trailing metadata."""
    usage = completion.usage
    return (
        ("x-gateway-instance", completion.instance),
        ("x-prompt-tokens", str(usage.prompt_tokens)),
        ("x-completion-tokens", str(usage.completion_tokens)),
        ("x-total-tokens", str(usage.total_tokens)),
        *(completion.budget.headers() if completion.budget else ()),
        ("x-usage-source", "reported" if completion.usage_reported else "estimated"),
    )


class OpenAIService(openai_pb2_grpc.OpenAIServiceGrpcServicer):
    """The three RPCs of the C# sample, served by one shared :class:`core.Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def _guard(
        self, context: grpc.aio.ServicerContext, method: str, call: Callable[[], Awaitable[T]]
    ) -> T:
        """Run ``call``; map gateway errors to their status, anything else to INTERNAL; count it.

        ``gateway_requests_total{route="/OpenAiRestApi.OpenAIServiceGrpc/<Method>",status="OK"}``
        uses gRPC status names, ``CANCELLED`` when the caller went away.
        """
        started = time.perf_counter()
        status = grpc.StatusCode.OK
        try:
            return await call()
        except GatewayError as error:
            status = failure_for(error).code
            await _abort(context, method, error)
        except grpc.aio.AbortError:
            raise
        except asyncio.CancelledError:
            status = grpc.StatusCode.CANCELLED
            raise
        except Exception:  # the host's last line: never leak a stack trace to the caller
            status = grpc.StatusCode.INTERNAL
            await _internal(context, method)
        finally:
            route = f"/{ROUTE_PREFIX}/{method}"
            self._gateway.observe_request(route, status.name, time.perf_counter() - started)

    async def Echo(
        self, request: openai_pb2.EchoRequest, context: grpc.aio.ServicerContext
    ) -> openai_pb2.EchoResponse:
        async def call() -> openai_pb2.EchoResponse:
            tenant = await self._gateway.authenticate(_credentials(request.tenant, context))
            return openai_pb2.EchoResponse(message=self._gateway.echo(tenant, request.value))

        return await self._guard(context, "Echo", call)

    async def GetChatCompletions(
        self, request: openai_pb2.GetChatCompletionsRequest, context: grpc.aio.ServicerContext
    ) -> openai_pb2.GetChatCompletionsResponse:
        async def call() -> openai_pb2.GetChatCompletionsResponse:
            tenant = await self._gateway.authenticate(_credentials(request.tenant, context))
            completion = await self._gateway.chat(tenant, _conversation(self._gateway, request.conversation))
            context.set_trailing_metadata(_usage_trailers(completion))
            return openai_pb2.GetChatCompletionsResponse(result=completion.text)

        return await self._guard(context, "GetChatCompletions", call)

    async def GetChatCompletionsStreaming(
        self, request: openai_pb2.GetChatCompletionsRequest, context: grpc.aio.ServicerContext
    ) -> None:
        async def call() -> None:
            tenant = await self._gateway.authenticate(_credentials(request.tenant, context))
            messages = _conversation(self._gateway, request.conversation)
            stream = await self._gateway.open_stream(tenant, messages)
            try:
                async for delta in stream:
                    if delta:
                        await context.write(openai_pb2.GetChatCompletionsStreamingResponse(message=delta))
                if stream.completion is not None:
                    context.set_trailing_metadata(_usage_trailers(stream.completion))
            finally:
                # Also runs when the caller cancels (CancelledError): stops the upstream call.
                await stream.aclose()

        await self._guard(context, "GetChatCompletionsStreaming", call)
