"""W3C trace context read and written directly, when OpenTelemetry's global propagator is its default.

``propagate.extract`` / ``inject`` go through the composite propagator, a getter or setter per
header, the baggage propagator and a fresh ``Context`` per step: ~25 µs a request on the serving
event loop, twice (the caller's ``traceparent`` in, Azure OpenAI's out). With the default
propagators (``OTEL_PROPAGATORS`` unset or ``tracecontext,baggage``) and no baggage involved, this
does what they do, the same way: ``traceparent`` parsed by ``TraceContextTextMapPropagator``'s own
pattern with its rules (all-zero ids, version ``ff``, extra fields under version 00: ignored),
``tracestate`` values joined and bounded as it does, ``tracestate`` written only when the span has
one. Anything else (other propagators, a ``baggage`` header in or baggage in the context out) goes
through ``propagate`` as before: :func:`extract` returns None for the caller to fall back.
"""

from __future__ import annotations

from opentelemetry import baggage, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import _TRACECONTEXT_MAXIMUM_TRACESTATE_LENGTH

_PATTERN = TraceContextTextMapPropagator._TRACEPARENT_HEADER_FORMAT_RE
_MAX_TRACESTATE = _TRACECONTEXT_MAXIMUM_TRACESTATE_LENGTH
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
_EMPTY = Context()


class _Default:
    """Whether the global propagator is the default one (checked again only when it is replaced)."""

    __slots__ = ("answer", "seen")

    def __init__(self) -> None:
        self.seen: object = None
        self.answer = False

    def __call__(self) -> bool:
        current = propagate.get_global_textmap()
        if current is not self.seen:
            composite = type(current) is CompositePropagator
            found = [type(p) for p in getattr(current, "_propagators", ())] if composite else []
            self.answer = found == [TraceContextTextMapPropagator, W3CBaggagePropagator]
            self.seen = current
        return self.answer


default_propagation = _Default()


def extract(traceparent: str | None, tracestates: list[str] | None, has_baggage: bool) -> Context | None:
    """The context ``propagate.extract`` makes of these headers (``tracestates``: every value, None
    without any); None when it must be asked itself (see the module docstring)."""
    if has_baggage or not default_propagation():
        return None
    if not traceparent:
        return _EMPTY
    match = _PATTERN.search(traceparent)
    if not match:
        return _EMPTY
    version, trace_id, span_id, flags, rest = match.groups()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN or (version == "00" and rest) or version == "ff":
        return _EMPTY
    state = None
    if tracestates is not None:
        if sum(len(value) for value in tracestates) + len(tracestates) - 1 > _MAX_TRACESTATE:
            return None  # the propagator's warning and its answer
        state = TraceState.from_header(tracestates)
    context = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16)),
                          trace_state=state)
    return trace.set_span_in_context(NonRecordingSpan(context), Context())


def inject(headers: dict[str, str]) -> dict[str, str]:
    """Add ``traceparent`` (and ``tracestate``) of the current span to outgoing ``headers``.

    Does nothing without a valid current span, so it costs next to nothing when tracing is off.
    """
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return headers
    if not default_propagation() or baggage.get_all():
        propagate.inject(headers)
        return headers
    ids, state = span_context, span_context.trace_state
    headers["traceparent"] = f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{ids.trace_flags:02x}"
    if state:
        headers["tracestate"] = state.to_header()
    return headers
