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

import enum
from typing import Final, Literal

from opentelemetry import propagate, trace
from opentelemetry.baggage import _BAGGAGE_KEY
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import _TRACECONTEXT_MAXIMUM_TRACESTATE_LENGTH, DEFAULT_TRACE_STATE

from ._current import get_current, with_span

_PATTERN = TraceContextTextMapPropagator._TRACEPARENT_HEADER_FORMAT_RE
_MAX_TRACESTATE = _TRACECONTEXT_MAXIMUM_TRACESTATE_LENGTH
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
_FLAGS = {f"{value:02x}": TraceFlags(value) for value in range(256)}  # the pattern's flags: 2 lower-case hex digits
_HEX = {int(flags): text for text, flags in _FLAGS.items()}
_EMPTY = Context()
_new_tuple = tuple.__new__


def valid_span_context(trace_id: int, span_id: int, is_remote: bool, flags: TraceFlags,
                       state: TraceState | None) -> SpanContext:
    """``SpanContext(trace_id, span_id, is_remote, flags, state)`` for ids the caller knows are valid
    (non-zero, in range): the tuple ``SpanContext.__new__`` builds, without its Python-level call
    (a few µs each on the serving loop, three times a request). tests/core/telemetry/test_w3c.py
    holds it equal to the constructor's."""
    return _new_tuple(SpanContext, (trace_id, span_id, is_remote, flags,
                                    DEFAULT_TRACE_STATE if state is None else state, True))


class _Fallback(enum.Enum):
    ASK = "ask the propagators"


ASK: Final = _Fallback.ASK  # remote_parent's answer when OpenTelemetry's propagators must read the headers


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


def remote_parent(traceparent: str | None, tracestates: list[str] | None,
                  has_baggage: bool) -> SpanContext | Literal[_Fallback.ASK] | None:
    """The caller's span context as the default propagators read these headers (``tracestates``: every
    value, None without any): None when there is no valid ``traceparent`` (a new trace), :data:`ASK`
    when the propagators must be asked themselves (see the module docstring)."""
    if has_baggage or not default_propagation():
        return ASK
    if not traceparent:
        return None
    match = _PATTERN.search(traceparent)
    if not match:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN or (version == "00" and rest) or version == "ff":
        return None
    state = None
    if tracestates is not None:
        if sum(len(value) for value in tracestates) + len(tracestates) - 1 > _MAX_TRACESTATE:
            return ASK  # the propagator's warning and its answer
        state = TraceState.from_header(tracestates)
    return valid_span_context(int(trace_id, 16), int(span_id, 16), True, _FLAGS[flags], state)  # ids checked above


def parent_context(parent: SpanContext | None) -> Context:
    """The context ``propagate.extract`` makes for a caller's span context (None: no parent, a new trace)."""
    return _EMPTY if parent is None else with_span(NonRecordingSpan(parent), _EMPTY)


def extract(traceparent: str | None, tracestates: list[str] | None, has_baggage: bool) -> Context | None:
    """The context ``propagate.extract`` makes of these headers (see :func:`remote_parent`); None
    when it must be asked itself."""
    parent = remote_parent(traceparent, tracestates, has_baggage)
    return None if parent is ASK else parent_context(parent)


def inject(headers: dict[str, str]) -> dict[str, str]:
    """Add ``traceparent`` (and ``tracestate``) of the current span to outgoing ``headers``.

    Does nothing without a valid current span, so it costs next to nothing when tracing is off.
    """
    current = get_current()  # one lookup for the span and the baggage
    span: trace.Span | None = current.get(_SPAN_KEY)  # type: ignore[assignment]  # the API keeps a span there
    if span is None:
        return headers
    ids = span.get_span_context()
    if not ids[5]:  # is_valid (SpanContext's fields by index: a property call each saved)
        return headers
    if current.get(_BAGGAGE_KEY) or not default_propagation():
        propagate.inject(headers)
        return headers
    headers["traceparent"] = traceparent(ids)
    state = ids[4]
    if state is not DEFAULT_TRACE_STATE and state:  # (the default one is empty: no len() call)
        headers["tracestate"] = state.to_header()
    return headers


def traceparent(ids: SpanContext) -> str:
    """``ids`` as a W3C ``traceparent`` value, as the propagator writes it (``bytes.hex``: a third of
    the time of ``format``'s ``032x``)."""
    flags = ids[3]
    return f"00-{ids[0].to_bytes(16).hex()}-{ids[1].to_bytes(8).hex()}-{_HEX.get(flags) or f'{flags:02x}'}"
