"""The span export process started by :class:`core.telemetry._span_pipe.SpanPipe`: its whole program.

Reads length-prefixed messages from stdin: first the configuration, pickled (connection string,
whether to ingest with a managed identity, the resource attributes), then batches of span records
(chunks of records, each chunk a pickled list, the batch their concatenation). Each
batch goes through the real ``AzureMonitorTraceExporter``'s ``export`` (transport, retries, offline
storage, Entra credential as in-process). Only the envelope of each span is made differently for
the spans the gateway itself makes (``_envelopes.Envelopes``: request spans of the hosts, GenAI attempt
spans): written straight from the record as the envelope's JSON text, a few hundredths of the CPU
of the exporter's conversion (a ``ReadableSpan`` rebuilt, then each field through the generated
models' (de)serializers), same envelopes. Every other span (Azure SDK calls, spans with events or
links, unknown attributes) is rebuilt as a ``ReadableSpan`` and converted by the exporter. The
exporter's client posts each batch as the rendered envelopes' text and orjson's JSON of the
others (:mod:`_envelope_json`: the same JSON value as its own encoder's, for a fifth of its CPU),
and the start-up heap is frozen out of the garbage collector.

At end of input (the parent closed the pipe or died) it exports what it has and exits; SIGINT
and SIGTERM are ignored so that a signal sent to the whole process group cannot cut the parent's
last flush.

Run as a script (``python -P .../_export_child.py``): it imports OpenTelemetry, the exporter and
its siblings ``_envelopes.py`` and ``_envelope_json.py`` only, not the gateway.
"""

from __future__ import annotations

import gc
import io
import logging
import os
import pickle
import signal
import struct
import sys
from collections.abc import Sequence
from typing import IO, Any

from azure.monitor.opentelemetry.exporter import AzureMonitorTraceExporter
from azure.monitor.opentelemetry.exporter._constants import _TYPE_MAP, _UNKNOWN
from azure.monitor.opentelemetry.exporter._generated.exporter.models import TelemetryItem
from azure.monitor.opentelemetry.exporter._utils import _get_telemetry_type
from azure.monitor.opentelemetry.exporter.export import _base as exporter_base
from azure.monitor.opentelemetry.exporter.statsbeat.customer._state import get_customer_stats_manager
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

if __package__:  # imported (tests)
    from ._envelope_json import RenderedItem, fast_track
    from ._envelopes import Envelopes
else:  # run as a script: its sibling modules, not the gateway's package
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _envelope_json import RenderedItem, fast_track  # type: ignore[import-not-found,no-redef]
    from _envelopes import Envelopes  # type: ignore[import-not-found,no-redef]

_HEADER = struct.Struct(">I")
_KINDS = {kind.value: kind for kind in SpanKind}
_CODES = {code.value: code for code in StatusCode}


def read_message(stream: IO[bytes]) -> bytes | None:
    """The next message, or None at end of input."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    size = _HEADER.unpack(header)[0]
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return payload


def records_in(batch: bytes) -> list[tuple[Any, ...]]:
    """The span records of a batch: pickled lists of records one after another (our own parent,
    over our own pipe), as ``_span_pipe`` makes them (the span's shared attributes last: one dict
    per chunk, not merged here)."""
    stream = io.BytesIO(batch)
    records: list[tuple[Any, ...]] = []
    while stream.tell() < len(batch):
        records.extend(pickle.load(stream))
    return records


def span_from(record: tuple[Any, ...], resource: Resource, scopes: dict[Any, InstrumentationScope]) -> ReadableSpan:
    """The inverse of ``_span_pipe.span_record`` (and of ``PipeSpan.record``: the shared attributes
    under the span's own)."""
    (name, trace_id, span_id, flags, state, parent, kind, start, end, attributes, events, links,
     code, description, scope, static) = record
    if static:
        attributes = {**static, **attributes}
    trace_state = TraceState.from_header([state]) if state else None
    context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(flags), trace_state=trace_state)
    parent_context = (SpanContext(trace_id, parent[0], is_remote=parent[1], trace_flags=TraceFlags(flags),
                                  trace_state=trace_state) if parent is not None else None)
    instrumentation = None
    if scope is not None:
        instrumentation = scopes.get(scope)
        if instrumentation is None:
            instrumentation = scopes[scope] = InstrumentationScope(*scope)
    return ReadableSpan(
        name, context=context, parent=parent_context, resource=resource, attributes=attributes,
        events=[Event(e_name, e_attributes, e_time) for e_name, e_attributes, e_time in events],
        links=[Link(SpanContext(l_trace, l_span, is_remote=True, trace_flags=TraceFlags(l_flags)), l_attributes)
               for l_trace, l_span, l_flags, l_attributes in links],
        kind=_KINDS[kind], status=Status(_CODES[code], description), start_time=start, end_time=end,
        instrumentation_scope=instrumentation,
    )


class _Exporter(AzureMonitorTraceExporter):
    """The real exporter, whose ``export`` is handed span records: :class:`Envelopes` builds the
    gateway's own, the exporter's conversion (on a rebuilt ``ReadableSpan``) the rest."""

    def __init__(self, resource: Resource, **options: Any) -> None:
        super().__init__(**options)
        self.client.track = fast_track(self.client.track)  # type: ignore[method-assign]  # the body made by orjson
        self._resource = resource
        self._scopes: dict[Any, InstrumentationScope] = {}
        self._envelopes = Envelopes(resource, self._instrumentation_key)
        self._rebuilt: tuple[Any, ReadableSpan] | None = None

    def _span(self, record: Any) -> ReadableSpan:
        if self._rebuilt is None or self._rebuilt[0] is not record:
            self._rebuilt = (record, span_from(record, self._resource, self._scopes))
        return self._rebuilt[1]

    def _span_to_envelope(self, span: Any) -> TelemetryItem:
        item = self._envelopes.build(span)
        return item if item is not None else super()._span_to_envelope(self._span(span))

    def _span_events_to_envelopes(self, span: Any) -> Sequence[TelemetryItem]:
        return super()._span_events_to_envelopes(self._span(span)) if span[10] else []


def telemetry_type(item: Any) -> str:
    """``_get_telemetry_type``: the customer SDK stats' name of an item's type, read from the REST
    form (the generated ``item.data.base_type`` descriptors cost several times more)."""
    if type(item) is RenderedItem:
        return _TYPE_MAP.get(item.base_type, _UNKNOWN)
    try:
        base_type = item._data["data"]._data["baseType"]
    except (AttributeError, KeyError, TypeError):
        return str(_get_telemetry_type(item))
    return _TYPE_MAP.get(base_type, _UNKNOWN) if base_type else _UNKNOWN


def count_sent(envelopes: Sequence[Any]) -> None:
    """The exporter's ``track_successful_items`` after each batch sent (customer SDK stats: items
    sent, by telemetry type), with the same counts added once per type instead of once per item
    (a lock and a generated-model read each: a tenth of this process's CPU)."""
    manager = get_customer_stats_manager()
    if not manager.is_initialized:  # what count_successful_items checks first
        return
    counts: dict[str, int] = {}
    for item in envelopes:
        kind = telemetry_type(item)
        counts[kind] = counts.get(kind, 0) + 1
    for kind, count in counts.items():
        manager.count_successful_items(count, kind)


def exporter_for(config: dict[str, Any]) -> tuple[Any, Resource]:
    """The exporter of this process (its base module's success count replaced by :func:`count_sent`)."""
    exporter_base.track_successful_items = count_sent  # type: ignore[attr-defined]
    resource = Resource(config["resource"])
    options: dict[str, Any] = {"connection_string": config["connection_string"],
                               "tracer_provider": TracerProvider(resource=resource, shutdown_on_exit=False)}
    if config.get("use_entra"):
        from azure.identity import ManagedIdentityCredential

        options["credential"] = ManagedIdentityCredential(client_id=config.get("managed_identity_client_id") or None)
    return _Exporter(resource, **options), resource


def yield_to_serving(priority: str) -> None:
    """``Telemetry:ExportPriority`` = idle: this process (and the threads it starts after this)
    under Linux's ``SCHED_IDLE`` policy. It then runs on CPU time nothing else wants: the kernel
    counts a core running only it as idle when it wakes the gateway, and the gateway preempts it
    at once, where at normal priority it could wait behind this process's batch (~10 ms of CPU
    each) for a time slice. ``bench/tracing_overhead.py --upstream fake``, concurrency 1: traced
    p99 ~3.8 -> ~2.1 ms (untraced ~1.4), throughput unchanged. A core kept busy by other
    work leaves this process behind: its spans wait in the gateway's bounded queue, then are
    dropped and counted (``gateway_trace_spans_dropped_total``), as a ``BatchSpanProcessor``
    whose exporter cannot keep up. "normal": left as started. Elsewhere than Linux, or where the
    policy is refused, left as started with a warning."""
    if priority != "idle":
        return
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError) as error:  # not Linux (no such call), or refused
        logging.getLogger("core.telemetry").warning("the span export process runs at normal CPU priority "
                                                    "(idle priority unavailable: %s)", error)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s span-export: %(name)s: %(message)s")
    stream = sys.stdin.buffer
    message = read_message(stream)
    if message is None:
        return 0
    config = pickle.loads(message)  # the configuration: one pickle
    yield_to_serving(config.get("priority", "idle"))  # before the exporter starts threads: they inherit it
    exporter, _ = exporter_for(config)
    gc.collect()  # as core._heap.freeze_startup_heap: full collections then walk what batches make, not the
    gc.freeze()  # modules and exporter (a third of the CPU left per span, without)
    try:
        while (batch := read_message(stream)) is not None:
            if batch:
                exporter.export(records_in(batch))  # records, not spans: see _Exporter
    finally:
        exporter.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
