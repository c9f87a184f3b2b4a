"""A SERVER span per RPC of the OpenAI service, continuing the caller's ``traceparent`` metadata.

opentelemetry-instrumentation-grpc's aio interceptor expects server-streaming handlers to be
async generators and fails with the ``context.write()`` style this servicer uses, so the host
has its own interceptor (RPC semantic conventions: ``rpc.system``, ``rpc.service``,
``rpc.method``, ``rpc.grpc.status_code``). Health checks and reflection are not traced.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode

from core import extract_trace_context, own_tracer

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class ServerSpans(grpc.aio.ServerInterceptor):
    """Wraps the unary-unary and unary-stream handlers of ``service``."""

    def __init__(self, service: str) -> None:
        self._prefix = f"/{service}/"
        self._service = service
        self._tracer = own_tracer("grpc_host")  # without the SDK's span object when the span pipe exports

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(self._prefix) or handler.request_streaming:
            return handler
        carrier = {item.key: item.value for item in handler_call_details.invocation_metadata or ()
                   if isinstance(item.value, str)}
        traced = self._traced(method, carrier, handler.unary_stream or handler.unary_unary)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                traced, handler.request_deserializer, handler.response_serializer)
        return grpc.unary_unary_rpc_method_handler(traced, handler.request_deserializer, handler.response_serializer)

    def _traced(self, method: str, carrier: dict[str, str], behavior: Behavior) -> Behavior:
        parent = extract_trace_context(carrier.get("traceparent"),  # as propagate.extract(carrier), directly
                                       [carrier["tracestate"]] if "tracestate" in carrier else None,
                                       "baggage" in carrier)
        if parent is None:  # other propagators, or baggage: theirs to read
            parent = propagate.extract(carrier)
        attributes = {"rpc.system": "grpc", "rpc.service": self._service, "rpc.method": method[len(self._prefix):]}

        async def run(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with self._tracer.start_as_current_span(
                method, context=parent, kind=SpanKind.SERVER, attributes=attributes,
                record_exception=False, set_status_on_exception=False,
            ) as span:
                code = grpc.StatusCode.UNKNOWN
                try:
                    result = await behavior(request, context)
                    code = context.code() or grpc.StatusCode.OK
                    return result
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                finally:
                    span.set_attribute("rpc.grpc.status_code", _value(code))
                    if code != grpc.StatusCode.OK:
                        span.set_status(Status(StatusCode.ERROR, code.name))

        return run


def _value(code: Any) -> int:
    """``grpc.StatusCode`` as its number (``context.code()`` may give the enum or an int)."""
    return int(code.value[0]) if isinstance(code, grpc.StatusCode) else int(code)
