"""Undecodable request messages -> ``INVALID_ARGUMENT`` with a plain message, counted, one log line.

grpc.aio deserializes a request before any servicer code runs; when protobuf cannot parse it,
gRPC itself answers ``UNKNOWN`` with a Python class name in the details and logs a traceback.
This interceptor wraps every handler's request deserializer: a ``DecodeError`` becomes a
marker value, and the wrapped handler answers it as the caller's mistake.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

log = logging.getLogger("grpc_host")

Observe = Callable[[str, str, float], None]  # (route, status name, seconds): gateway.observe_request


class _Undecodable:
    __slots__ = ("reason", "started")

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.started = time.perf_counter()


def _message_name(deserializer: Callable[[bytes], Any]) -> str:
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "")) or "request"


class RejectUndecodable(grpc.aio.ServerInterceptor):
    """Answers requests protobuf cannot parse with INVALID_ARGUMENT and counts them per method."""

    def __init__(self, observe: Observe) -> None:
        self._observe = observe

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        route = str(handler_call_details.method)
        decode = handler.request_deserializer
        name = _message_name(decode)

        def safe_decode(data: bytes) -> Any:
            try:
                return decode(data)
            except DecodeError as exc:
                return _Undecodable(str(exc))

        async def reject(request: _Undecodable, context: grpc.aio.ServicerContext) -> None:
            detail = (f"the request is not a valid {name} protobuf message ({request.reason}); "
                      "build it from protos/openai.proto")
            log.warning("%s from %s: %s", route, context.peer(), detail)
            self._observe(route, grpc.StatusCode.INVALID_ARGUMENT.name, time.perf_counter() - request.started)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, detail)

        if handler.request_streaming:
            return _with_request_stream(handler, safe_decode, reject)
        if handler.response_streaming:
            behavior = handler.unary_stream
            if inspect.isasyncgenfunction(behavior):

                async def stream_gen(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                    if isinstance(request, _Undecodable):
                        await reject(request, context)
                    async for item in behavior(request, context):
                        yield item

                return handler._replace(request_deserializer=safe_decode, unary_stream=stream_gen)

            async def stream_call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if isinstance(request, _Undecodable):
                    return await reject(request, context)
                return await behavior(request, context)

            return handler._replace(request_deserializer=safe_decode, unary_stream=stream_call)

        unary = handler.unary_unary

        async def unary_call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Undecodable):
                return await reject(request, context)
            return await unary(request, context)

        return handler._replace(request_deserializer=safe_decode, unary_unary=unary_call)


Reject = Callable[[_Undecodable, grpc.aio.ServicerContext], Awaitable[None]]


def _with_request_stream(handler: Any, safe_decode: Callable[[bytes], Any], reject: Reject) -> Any:
    """Client-streaming and bidi handlers (server reflection): the request iterator aborts with
    INVALID_ARGUMENT at the first undecodable message."""
    field = "stream_stream" if handler.response_streaming else "stream_unary"
    behavior = getattr(handler, field)

    async def checked(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for request in requests:
            if isinstance(request, _Undecodable):
                await reject(request, context)
            yield request

    if inspect.isasyncgenfunction(behavior):

        async def gen(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for item in behavior(checked(requests, context), context):
                yield item

        return handler._replace(request_deserializer=safe_decode, **{field: gen})

    async def call(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        return await behavior(checked(requests, context), context)

    return handler._replace(request_deserializer=safe_decode, **{field: call})
