"""Spans for the span pipe without the SDK's span object: the gateway's own spans, on the event loop.

The SDK's ``Tracer.start_span`` and ``Span.end`` cost ~50-130 µs a span here (attribute
validation into ``BoundedAttributes``, locks, processor fan-out, a ``ReadableSpan`` at end), twice a
request on the serving event loop. When the tracer provider's only processor is a
:class:`~core.telemetry._span_pipe.SpanPipe`, nothing needs that object: the pipe reduces every span
to a record. :class:`PipeTracer` makes the same span (same sampler decision, ids and trace flags as
the SDK's tracer of that provider; the OpenTelemetry API's ``Span``, so context propagation, log
correlation and ``use_span`` work as with any span) and :meth:`PipeSpan.end` queues it on the pipe,
which writes its record. Used for the spans the gateway makes itself (the hot routes' request span,
each upstream attempt, gRPC calls); everything else (FastAPI's other routes, Azure SDK calls) keeps
the SDK's spans through the same provider.

Attribute values are the gateway's own (str, int, bool, tuples of str), set as they are: no SDK
limits apply (128 attributes, events, links by default; these spans have fewer than 20).
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Iterator, Mapping, Sequence
from time import time_ns
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision, ParentBased, Sampler
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import DEFAULT_TRACE_STATE
from opentelemetry.util._decorator import _agnosticcontextmanager
from opentelemetry.util.types import Attributes, AttributeValue

from ._w3c import parent_context, valid_span_context

_FLAGS = {(sampled, random): TraceFlags((TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
                                        | (TraceFlags.RANDOM_TRACE_ID if random else 0))
          for sampled in (False, True, 0, 1) for random in (False, True, 0, 2)}  # (sampled, random trace id) -> flags
_SAMPLED, _SAMPLED_RANDOM = _FLAGS[True, False], _FLAGS[True, True]
_BY_BITS = tuple(_FLAGS[bits & 1, bits & 2] for bits in range(4))  # a parent's flags & 3 -> the child's flags
_UNSET = Status(StatusCode.UNSET)


def _parent_decides(sampler: Sampler) -> bool:
    """``sampler`` is ``ParentBased(ALWAYS_ON)`` (the default, ``parentbased_always_on``): a parent's
    decision is followed, a root is sampled."""
    if type(sampler) is not ParentBased:
        return False
    delegates = vars(sampler)
    return all(delegates.get(f"_{name}") is ALWAYS_ON for name in ("root", "remote_parent_sampled",
                                                                     "local_parent_sampled")) and all(
        delegates.get(f"_{name}") is ALWAYS_OFF for name in ("remote_parent_not_sampled", "local_parent_not_sampled"))


class Queue(Protocol):
    def put(self, span: PipeSpan) -> None: ...


class PipeSpan(trace.Span):
    """A recording span whose ``end`` hands it to the pipe (see ``record``)."""

    __slots__ = ("_attributes", "_context", "_end", "_events", "_kind", "_links", "_name", "_parent", "_queue",
                 "_sampled", "_scope", "_start", "_static", "_status")

    def __init__(self, queue: Queue, name: str, context: SpanContext, parent: SpanContext | None, kind: SpanKind,
                 attributes: dict[str, Any], links: Sequence[Link], scope: tuple[str, str | None, str | None],
                 start: int, static: Mapping[str, Any] | None = None, sampled: bool | None = None) -> None:
        self._queue = queue
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._attributes = attributes
        self._static = static
        self._links = links
        self._scope = scope
        self._start = start
        self._end: int | None = None
        self._events: list[tuple[str, dict[str, Any], int]] | tuple[()] = ()  # a list from the first event
        self._status = _UNSET
        self._sampled = context.trace_flags.sampled if sampled is None else sampled

    def record(self) -> tuple[Any, ...]:
        """What ``_span_pipe.span_record`` makes of an SDK span, for this one: the shared ``static``
        attributes by reference (the pipe pickles many records at once: a shared dict goes once)."""
        ctx, parent, status = self._context, self._parent, self._status
        state = ctx[4]
        code, description = (0, None) if status is _UNSET else (status.status_code.value, status.description)
        return (
            self._name, ctx[0], ctx[1], int(ctx[3]),
            "" if state is DEFAULT_TRACE_STATE or not state else state.to_header(),  # (no len() call: most have none)
            (parent[1], parent[2]) if parent is not None else None,
            self._kind._value_, self._start, self._end, self._attributes, self._events,
            [(link.context.trace_id, link.context.span_id, int(link.context.trace_flags), dict(link.attributes or {}))
             for link in self._links] if self._links else (),
            code, description, self._scope, self._static,
        )

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end is None

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        if self._end is None:
            self._attributes.update(attributes)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        if self._end is None:
            self._attributes[key] = value

    def add_event(self, name: str, attributes: Attributes = None, timestamp: int | None = None) -> None:
        if self._end is None:
            event = (name, dict(attributes or {}), timestamp if timestamp is not None else time_ns())
            if self._events:
                self._events.append(event)
            else:
                self._events = [event]

    def update_name(self, name: str) -> None:
        if self._end is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK: an OK status is final, UNSET never overrides."""
        if self._end is not None or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self._status = status

    def record_exception(self, exception: BaseException, attributes: Attributes = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        """The SDK's exception event (the exporter makes it an exception item)."""
        stacktrace = "".join(traceback.format_exception(type(exception), exception, exception.__traceback__))
        event: dict[str, Any] = {"exception.type": type(exception).__name__, "exception.message": str(exception),
                 "exception.stacktrace": stacktrace, "exception.escaped": str(escaped)}
        event.update(attributes or {})
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end is not None:
            return
        self._end = end_time if end_time is not None else time_ns()
        if self._sampled:
            self._queue.put(self)


class PipeTracer(trace.Tracer):
    """``start_span`` as the SDK tracer of ``provider`` decides it, making :class:`PipeSpan` s."""

    def __init__(self, provider: TracerProvider, queue: Queue, name: str, version: str | None = None,
                 schema_url: str | None = None) -> None:
        self._sampler = provider.sampler
        self._parent_decides = _parent_decides(provider.sampler)
        self._ids = provider.id_generator
        # the SDK's generator never makes an invalid id (it draws again): no validity check needed
        self._context = valid_span_context if type(self._ids) is RandomIdGenerator else SpanContext
        self._random_ids = type(self._ids) is RandomIdGenerator  # its span ids drawn here, as it draws them
        self._queue = queue
        self._scope = (name, version, schema_url)

    def start_span(self, name: str, context: Context | None = None, kind: SpanKind = SpanKind.INTERNAL,
                   attributes: Attributes = None, links: Sequence[Link] | None = (), start_time: int | None = None,
                   record_exception: bool = True, set_status_on_exception: bool = True) -> trace.Span:
        parent: SpanContext | None = trace.get_current_span(context).get_span_context()
        if parent is not None and not parent.is_valid:
            parent = None
        if self._parent_decides and not links and start_time is None:
            return self.start_under(parent, name, kind, dict(attributes) if attributes else {})
        links = links or ()
        ids = self._ids
        if parent is None:
            trace_id = ids.generate_trace_id()
            random_trace_id = ids.is_trace_id_random()
        else:
            trace_id = parent.trace_id
            random_trace_id = parent.trace_flags.random_trace_id
        if self._parent_decides:  # what ParentBased(ALWAYS_ON) decides, without its calls and result object
            sampled = recording = parent is None or parent.trace_flags.sampled
            state = parent.trace_state if parent is not None else None
            kept = dict(attributes) if recording and attributes else {}
        else:
            decision = self._sampler.should_sample(context, trace_id, name, kind, attributes, links)
            sampled = decision.decision is Decision.RECORD_AND_SAMPLE
            recording = sampled or decision.decision is Decision.RECORD_ONLY
            state, kept = decision.trace_state, dict(decision.attributes or {})
        span_context = SpanContext(trace_id, ids.generate_span_id(), is_remote=False,
                                   trace_flags=_FLAGS[sampled, bool(random_trace_id)], trace_state=state)
        if not recording:
            return trace.NonRecordingSpan(span_context)
        return PipeSpan(self._queue, name, span_context, parent, kind, kept, links,
                        self._scope, start_time if start_time is not None else time_ns())

    def start_under(self, parent: SpanContext | None, name: str, kind: SpanKind, attributes: dict[str, Any],
                    static: Mapping[str, Any] | None = None) -> trace.Span:
        """``start_span`` with the parent's span context given (None: a new trace), no links, starting
        now. The span keeps ``attributes`` (the caller's dict, not copied) over ``static``: attributes
        many spans share (never modified; each span's own take precedence). Under a sampler other
        than the default it is ``start_span``."""
        if not self._parent_decides:
            merged = {**static, **attributes} if static else attributes
            return self.start_span(name, parent_context(parent), kind, merged)
        ids = self._ids
        if parent is None:  # a root: sampled (ParentBased(ALWAYS_ON)), as the SDK's tracer decides
            flags = _SAMPLED_RANDOM if ids.is_trace_id_random() else _SAMPLED
            span_context = self._context(ids.generate_trace_id(), ids.generate_span_id(), False, flags, None)
        else:  # the parent's trace, its sampling decision, its trace state
            flags = parent[3]
            span_id = random.getrandbits(64) if self._random_ids else 0  # (RandomIdGenerator's draw, without its call)
            span_context = self._context(parent[0], span_id or ids.generate_span_id(), False,
                                         _BY_BITS[flags & 3], parent[4])
            if not flags & 1:
                return trace.NonRecordingSpan(span_context)
        return PipeSpan(self._queue, name, span_context, parent, kind, attributes, (), self._scope, time_ns(), static,
                        sampled=True)

    @_agnosticcontextmanager
    def start_as_current_span(self, name: str, context: Context | None = None, kind: SpanKind = SpanKind.INTERNAL,
                              attributes: Attributes = None, links: Sequence[Link] | None = (),
                              start_time: int | None = None, record_exception: bool = True,
                              set_status_on_exception: bool = True, end_on_exit: bool = True) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with trace.use_span(span, end_on_exit=end_on_exit, record_exception=record_exception,
                            set_status_on_exception=set_status_on_exception) as current:
            yield current
