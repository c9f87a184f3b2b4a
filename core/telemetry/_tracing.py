"""Spans of the gateway under OpenTelemetry's GenAI conventions (the API only: no SDK here).

One CLIENT span per upstream attempt, children of the host's SERVER span, so failover attempts
are siblings. When no SDK is configured (no ``APPLICATIONINSIGHTS_CONNECTION_STRING``) the
gateway holds a disabled :class:`Tracing` and every call is a constant-time no-op.

Attributes (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/):
``gen_ai.operation.name`` chat | embeddings, ``gen_ai.provider.name`` azure.ai.openai,
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``, ``gen_ai.response.finish_reasons``, ``server.address``/``port``, and the
gateway's own ``gateway.tenant``, ``gateway.instance``, ``gateway.attempt``, ``gateway.limited``,
``gateway.usage_source`` (reported | estimated). Prompt and completion text
(``gen_ai.input.messages`` / ``gen_ai.output.messages``) only with ``Telemetry:CaptureContent``.
The deprecated ``gen_ai.system`` (same value) and ``peer.service`` (the instance) are set too: the
Azure Monitor exporter types the dependency ``GenAI | azure.ai.openai`` and targets it from them.
It keeps ``error.type`` out of customDimensions, so a failed attempt also says ``gateway.error``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any, Literal, Protocol, cast
from urllib.parse import urlsplit

import orjson
from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation import _SPAN_KEY

from .._errors import GatewayError
from .._values import ChatMessage, Completion
from ._current import attach, detach, get_current, with_span

PROVIDER = "azure.ai.openai"
Operation = Literal["chat", "embeddings"]


def tracing_active() -> bool:
    """True when an OpenTelemetry SDK is installed as the global tracer provider."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def own_tracer(name: str, version: str | None = None, schema_url: str | None = None) -> trace.Tracer:
    """The tracer for the spans the gateway makes itself: with the span pipe as the provider's only
    processor, one that skips the SDK's span object (``_pipe_span``); otherwise the provider's own."""
    provider = trace.get_tracer_provider()
    if tracing_active():
        from ._span_pipe import pipe_tracer

        direct = pipe_tracer(provider, name, version, schema_url)
        if direct is not None:
            return direct
    return provider.get_tracer(name, version, schema_url)


class _DirectTracer(Protocol):
    def start_under(self, parent: SpanContext | None, name: str, kind: SpanKind, attributes: dict[str, Any],
                    static: Mapping[str, Any] | None = None) -> Span: ...


class Attempt:
    """The span of one upstream attempt. ``finish`` records the answer and ends it once.

    Also the block of :meth:`Tracing.attempt` (a plain context manager, no generator): the span is
    current inside; an error raised in the block marks it failed and ends it.
    """

    __slots__ = ("_capture", "_open", "_span", "_token")

    def __init__(self, span: Span | None, capture_content: bool) -> None:
        self._span = span
        self._capture = capture_content
        self._open = span is not None

    def __enter__(self) -> Attempt:
        assert self._span is not None
        self._token = attach(with_span(self._span))  # current: the upstream call carries it
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if error is not None:
            self.fail(error)
        detach(self._token)
        if self._open and self._span is not None:
            self._span.end()
            self._span = None

    def hand_over(self) -> None:
        """Keep the span open after the attempt's block (a stream ends it in ``finish``)."""
        self._open = False

    def finish(self, completion: Completion, model: str = "", finish_reasons: Sequence[str] = ()) -> None:
        span = self._span
        if span is None:
            return
        self._span = None
        usage = completion.usage
        attributes: dict[str, str | int | tuple[str, ...]] = {
            "gen_ai.usage.input_tokens": usage.prompt_tokens,
            "gen_ai.usage.output_tokens": usage.completion_tokens,
            "gateway.usage_source": "reported" if completion.usage_reported else "estimated",
        }
        if model:
            attributes["gen_ai.response.model"] = model
        if finish_reasons:
            attributes["gen_ai.response.finish_reasons"] = tuple(finish_reasons)
        if self._capture:
            output = [{"role": "assistant", "parts": [{"type": "text", "content": completion.text}],
                       "finish_reason": finish_reasons[0] if finish_reasons else "stop"}]
            attributes["gen_ai.output.messages"] = orjson.dumps(output).decode()
        span.set_attributes(attributes)  # one lock and one pass, not one per attribute
        span.end()

    def fail(self, error: BaseException) -> None:
        span = self._span
        if span is None:
            return
        self._span = None
        span.set_attributes({"error.type": type(error).__name__, "gateway.error": type(error).__name__})
        detail = error.detail if isinstance(error, GatewayError) else ""  # safe: never keys
        span.set_status(Status(StatusCode.ERROR, detail))
        span.end()


_NO_ATTEMPT = Attempt(None, False)
_NO_SPAN = nullcontext(_NO_ATTEMPT)  # reentrant and reusable: one for every untraced attempt


def _static_attributes(operation: str, model: str, endpoint: str, instance: str) -> dict[str, str | int | bool]:
    """The attributes an attempt's span gets from its instance (built once per instance)."""
    where = urlsplit(endpoint)
    return {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": PROVIDER,
        "gen_ai.system": PROVIDER,  # deprecated name, still what Application Insights types by
        "gen_ai.request.model": model,
        "server.address": where.hostname or "",
        "server.port": where.port or (443 if where.scheme == "https" else 80),
        "peer.service": instance,  # the dependency's target: one node per instance on the map
        "gateway.tenant": "",
        "gateway.instance": instance,
        "gateway.attempt": 0,
        "gateway.limited": False,
    }


class Tracing:
    """What the gateway traces; ``Tracing()`` (disabled) when no SDK is configured."""

    def __init__(self, tracer: trace.Tracer | None = None, *, capture_content: bool = False) -> None:
        self._tracer = tracer
        self._direct = cast(_DirectTracer, tracer) if hasattr(tracer, "start_under") else None  # _pipe_span.PipeTracer
        self._capture = capture_content
        self._static: dict[tuple[str, str, str, str], tuple[str, dict[str, str | int | bool]]] = {}

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def attempt(
        self,
        operation: Operation,
        *,
        tenant: str,
        instance: str,
        model: str,
        endpoint: str,
        attempt: int,
        prompt: Sequence[ChatMessage] = (),
    ) -> AbstractContextManager[Attempt]:
        """A CLIENT span, current inside the block (the upstream request carries its traceparent).

        An error raised in the block marks the span failed and ends it; otherwise it ends at the
        end of the block unless :meth:`Attempt.hand_over` was called. Without a tracer: a shared
        block that does nothing.
        """
        if self._tracer is None:
            return _NO_SPAN
        server: Span | None = get_current().get(_SPAN_KEY)  # type: ignore[assignment]  # (no cast() call)
        if server is not None and server.is_recording():  # the host's request span: who was served, by which instance
            server.set_attributes({"gateway.tenant": tenant, "gateway.instance": instance, "gateway.limited": False})
        key = (operation, model, endpoint, instance)
        known = self._static.get(key)
        if known is None:
            static = _static_attributes(operation, model, endpoint, instance)
            known = self._static[key] = (f"{operation} {model}", static)
        name, static = known
        attributes: dict[str, str | int | bool] = {"gateway.tenant": tenant, "gateway.attempt": attempt}
        if self._capture and prompt:
            attributes["gen_ai.input.messages"] = orjson.dumps(
                [{"role": m.role, "parts": [{"type": "text", "content": m.content}]} for m in prompt]
            ).decode()
        span: Span
        if self._direct is not None:  # the span pipe's tracer: the parent handed over, the instance's part shared
            parent = server.get_span_context() if server is not None else None
            span = self._direct.start_under(parent if parent is not None and parent.is_valid else None, name,
                                            SpanKind.CLIENT, attributes, static)
        else:
            span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes={**static, **attributes})
        return Attempt(span, self._capture)

    def limited(self, tenant: str) -> None:
        """Mark the current (request) span: ``tenant`` was refused by its limits (``gateway.limited``)."""
        span = trace.get_current_span()
        if self._tracer is not None and span.is_recording():
            span.set_attributes({"gateway.tenant": tenant, "gateway.limited": True})
