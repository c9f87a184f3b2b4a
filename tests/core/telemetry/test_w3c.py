"""The W3C trace context read and written directly (core/telemetry/_w3c.py) must continue exactly the
traces OpenTelemetry's default propagators would: same parent (ids, flags, tracestate) for every
``traceparent`` a caller may send, valid or not, and the same headers to Azure OpenAI."""

from __future__ import annotations

import pytest
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from core import extract_trace_context
from core.telemetry import inject_trace_context
from core.telemetry._w3c import valid_span_context

IDS = "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"
TRACEPARENTS = [
    None, "", f"00-{IDS}-01", f"00-{IDS}-00", f"  00-{IDS}-01\t", f"01-{IDS}-01-future", f"00-{IDS}-01-extra",
    f"ff-{IDS}-01", f"00-{'0' * 32}-b7ad6b7169203331-01", f"00-0af7651916cd43dd8448eb211c80319c-{'0' * 16}-01",
    f"00-{IDS.upper()}-01", "00-0af7651916cd43dd-b7ad6b7169203331-01", "garbage", f"00-{IDS}-03",
]
TRACESTATES = [None, ["congo=t61rcWkgMzE"], ["congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7"], ["not a state"],
               ["a=" + "x" * 600]]


def parent_of(ctx: context.Context) -> SpanContext:
    return trace.get_current_span(ctx).get_span_context()


@pytest.mark.parametrize("traceparent", TRACEPARENTS)
@pytest.mark.parametrize("tracestates", TRACESTATES)
def test_a_callers_trace_context_is_read_as_the_default_propagators_read_it(
        traceparent: str | None, tracestates: list[str] | None) -> None:
    carrier: dict[str, str] = {}
    if traceparent is not None:
        carrier["traceparent"] = traceparent
    if tracestates is not None:
        carrier["tracestate"] = ",".join(tracestates)
    expected = parent_of(propagate.extract(carrier))
    direct = extract_trace_context(traceparent, tracestates, False)
    found = parent_of(direct if direct is not None else propagate.extract(carrier))
    assert found == expected
    assert found.trace_state == expected.trace_state


def test_baggage_or_other_propagators_are_left_to_opentelemetry() -> None:
    assert extract_trace_context(f"00-{IDS}-01", None, True) is None
    saved = propagate.get_global_textmap()
    propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator()]))
    try:
        assert extract_trace_context(f"00-{IDS}-01", None, False) is None
    finally:
        propagate.set_global_textmap(saved)
    assert extract_trace_context(f"00-{IDS}-01", None, False) is not None
    assert [type(p) for p in saved._propagators] == [  # type: ignore[attr-defined]
        TraceContextTextMapPropagator, W3CBaggagePropagator]


@pytest.mark.parametrize("state", [TraceState(), TraceState([("congo", "t61rcWkgMzE"), ("rojo", "00f067aa0ba902b7")])])
@pytest.mark.parametrize("flags", [TraceFlags.SAMPLED, TraceFlags.DEFAULT])
def test_the_upstream_call_carries_what_the_default_propagators_write(state: TraceState, flags: int) -> None:
    span = NonRecordingSpan(SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=False,
                                        trace_flags=TraceFlags(flags), trace_state=state))
    for ctx in (trace.set_span_in_context(span),
                baggage.set_baggage("tenant", "contoso", trace.set_span_in_context(span))):
        token = context.attach(ctx)
        try:
            expected: dict[str, str] = {"Accept": "application/json"}
            propagate.inject(expected)
            assert inject_trace_context({"Accept": "application/json"}) == expected
        finally:
            context.detach(token)
    assert inject_trace_context({"Accept": "application/json"}) == {"Accept": "application/json"}


@pytest.mark.parametrize("ids", [(1, 1), (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331),
                                 (2**128 - 1, 2**64 - 1)])
@pytest.mark.parametrize("remote", [True, False])
@pytest.mark.parametrize("flags", [TraceFlags(0), TraceFlags(1), TraceFlags(3)])
@pytest.mark.parametrize("state", [None, TraceState([("congo", "t61rcWkgMzE")])])
def test_span_contexts_made_without_the_constructor_are_the_constructors(
        ids: tuple[int, int], remote: bool, flags: TraceFlags, state: TraceState | None) -> None:
    """The gateway's own spans (and a caller's parent) get their SpanContext as a plain tuple: it must
    be the very value SpanContext(...) makes, field by field, with the same defaults."""
    made = valid_span_context(*ids, remote, flags, state)
    expected = SpanContext(*ids, is_remote=remote, trace_flags=flags, trace_state=state)
    assert type(made) is SpanContext and made == expected
    assert (made.trace_id, made.span_id, made.is_remote, made.trace_flags, made.trace_state, made.is_valid) == (
        expected.trace_id, expected.span_id, expected.is_remote, expected.trace_flags, expected.trace_state, True)
    assert trace.format_trace_id(made.trace_id) == trace.format_trace_id(expected.trace_id)


def test_the_current_context_is_the_apis_whichever_side_sets_or_reads_it(caplog: pytest.LogCaptureFixture) -> None:
    """The gateway makes its spans current on the API's own context variable (core/telemetry/_current.py):
    what it sets, OpenTelemetry (and the log records it correlates) reads, and the other way round."""
    from core.telemetry import _current

    assert _current.direct  # the default runtime context: the variable's own methods
    caller = NonRecordingSpan(valid_span_context(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True,
                                                 TraceFlags(1), None))
    ours = NonRecordingSpan(valid_span_context(0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7, False,
                                               TraceFlags(1), None))
    outer = context.attach(baggage.set_baggage("k", "v", trace.set_span_in_context(caller)))
    try:
        within = _current.with_span(ours)
        assert type(within) is context.Context
        assert within == trace.set_span_in_context(ours)  # the current context's baggage kept, its span replaced
        token = _current.attach(within)
        assert context.get_current() is within and trace.get_current_span() is ours
        assert baggage.get_baggage("k") == "v"
        _current.detach(token)
        assert trace.get_current_span() is caller
        token = context.attach(_current.with_span(ours, context.Context()))
        assert _current.get_current() is context.get_current() and trace.get_current_span() is ours
        _current.detach(token)
        assert trace.get_current_span() is caller
        _current.detach(token)  # twice: refused by the variable, logged, nothing raised
        assert trace.get_current_span() is caller
        assert "could not restore the OpenTelemetry context" in caplog.text
    finally:
        context.detach(outer)
    assert trace.get_current_span() is trace.INVALID_SPAN
