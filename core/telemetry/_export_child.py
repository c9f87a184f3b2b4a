"""The span export process started by :class:`core.telemetry._span_pipe.SpanPipe`: its whole program.

Reads length-prefixed pickles from stdin: first the configuration (connection string, whether to
ingest with a managed identity, the resource attributes), then batches of span records. Each
batch becomes ``ReadableSpan`` objects again and goes through the real ``AzureMonitorTraceExporter``
(envelopes, gzip, retries and offline storage as in-process). At end of input (the parent closed
the pipe or died) it exports what it has and exits; SIGINT and SIGTERM are ignored so that a
signal sent to the whole process group cannot cut the parent's last flush.

Run as a script (``python -P .../_export_child.py``): it imports OpenTelemetry and the exporter
only, not the gateway.
"""

from __future__ import annotations

import logging
import pickle
import signal
import struct
import sys
from typing import IO, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

_HEADER = struct.Struct(">I")
_KINDS = {kind.value: kind for kind in SpanKind}
_CODES = {code.value: code for code in StatusCode}


def read_message(stream: IO[bytes]) -> Any:
    """The next pickled message, or None at end of input."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    size = _HEADER.unpack(header)[0]
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return pickle.loads(payload)  # our own parent, over our own pipe


def span_from(record: tuple[Any, ...], resource: Resource, scopes: dict[Any, InstrumentationScope]) -> ReadableSpan:
    """The inverse of ``_span_pipe.span_record``."""
    (name, trace_id, span_id, flags, state, parent, kind, start, end, attributes, events, links,
     code, description, scope) = record
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


def exporter_for(config: dict[str, Any]) -> tuple[Any, Resource]:
    from azure.monitor.opentelemetry.exporter import AzureMonitorTraceExporter

    resource = Resource(config["resource"])
    options: dict[str, Any] = {"connection_string": config["connection_string"],
                               "tracer_provider": TracerProvider(resource=resource, shutdown_on_exit=False)}
    if config.get("use_entra"):
        from azure.identity import ManagedIdentityCredential

        options["credential"] = ManagedIdentityCredential(client_id=config.get("managed_identity_client_id") or None)
    return AzureMonitorTraceExporter(**options), resource


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s span-export: %(name)s: %(message)s")
    stream = sys.stdin.buffer
    config = read_message(stream)
    if config is None:
        return 0
    exporter, resource = exporter_for(config)
    scopes: dict[Any, InstrumentationScope] = {}
    try:
        while (records := read_message(stream)) is not None:
            if records:
                exporter.export([span_from(record, resource, scopes) for record in records])
    finally:
        exporter.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
