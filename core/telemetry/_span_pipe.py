"""Finished spans handed to a child process that turns them into Application Insights envelopes.

The Azure Monitor exporter's conversion of a span to an envelope is Python code holding the GIL
(~0.7 ms a span); in the serving process it competes with the event loop. :class:`SpanPipe` is
the tracer provider's span processor instead of a ``BatchSpanProcessor``: ``on_end`` turns the
span into a compact tuple (:func:`span_record`); every :data:`CHUNK` records are pickled together
(names, attribute keys and the attributes spans share, e.g. an instance's, go once a chunk, not
once a span) and the bytes appended to a bounded queue; a thread writes queued chunks, a batch at
a time (a full one whenever one is queued, everything on the schedule), length-prefixed, to the
stdin of ``_export_child.py``, where the real
``AzureMonitorTraceExporter`` builds and posts the envelopes on another core. A span is bytes
within a chunk of its end: nothing of it waits in the queue for the garbage collector to walk
(queued span objects lived long enough to reach the oldest generation, and made full collections
both more frequent and longer).

- Bounded: at ``OTEL_BSP_MAX_QUEUE_SIZE`` queued spans a chunk is dropped and its spans counted
  (:attr:`SpanPipe.dropped`, exposed as ``gateway_trace_spans_dropped_total``); ``on_end``
  never blocks. A child that stops reading only stalls the writer thread.
- Lossless stop: ``shutdown`` (the provider's, at exit) sends what is queued, closes the pipe and
  waits for the child, which exports everything it read before it exits.
- No orphan: the child exits at end of input, i.e. when the parent closes the pipe or dies
  (even by SIGKILL); it ignores SIGINT/SIGTERM so a group signal cannot cut the last flush.
- Restarted: a child found gone (a write to it fails) is started again by the writer thread after
  1 s, then 2, 4... up to 60 s while it keeps dying; spans wait in the bounded queue meanwhile
  (beyond it: dropped and counted), the batch whose write failed included.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from ._pipe_span import PipeSpan, PipeTracer

log = logging.getLogger("core.telemetry")
CHILD = Path(__file__).with_name("_export_child.py")
_HEADER = struct.Struct(">I")
RESTART_SECONDS = (1.0, 60.0)  # a dead export process: first wait, longest wait
CHUNK = 32  # span records pickled together (one pickle: their shared attributes and names go once)
_ROOT = str(Path(__file__).resolve().parents[2])


def span_record(span: ReadableSpan) -> tuple[Any, ...]:
    """What the exporter reads of a span, as picklable builtins (see ``_export_child.span_from``); the
    last field is the shared attributes of a :class:`PipeSpan` (None here)."""
    ctx = span.context
    parent = span.parent
    scope = span.instrumentation_scope
    status = span.status
    events = span.events
    links = span.links
    state = ctx.trace_state
    return (
        span.name, ctx.trace_id, ctx.span_id, int(ctx.trace_flags),
        state.to_header() if state else "",
        (parent.span_id, parent.is_remote) if parent is not None else None,
        span.kind.value, span.start_time, span.end_time, dict(span.attributes or {}),
        [(e.name, dict(e.attributes or {}), e.timestamp) for e in events] if events else (),
        [(link.context.trace_id, link.context.span_id, int(link.context.trace_flags), dict(link.attributes or {}))
         for link in links] if links else (),
        status.status_code.value, status.description,
        (scope.name, scope.version, scope.schema_url) if scope is not None else None, None,
    )


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(environ.get(name, "") or default)
    except ValueError:
        log.warning("%s is not a whole number; using %d", name, default)
        return default
    return value if value > 0 else default


class SpanPipe(SpanProcessor):
    """Span processor exporting through a child process; see the module docstring.

    ``config`` is the child's first message (connection string, credential choice, resource
    attributes). Batching follows the ``OTEL_BSP_*`` variables: schedule delay (ms, default
    5000), max queue size (2048), max export batch size (512).
    """

    def __init__(self, config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._delay = _env_int(env, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000
        self._max_queue = _env_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048)
        self._batch = min(_env_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512), self._max_queue)
        self._chunk = min(CHUNK, self._batch)
        self._pending: deque[tuple[Any, ...]] = deque()  # records not yet pickled (fewer than a chunk)
        self._queue: deque[tuple[int, bytes]] = deque()  # (spans, their records pickled together)
        self._queued = 0  # spans in the queue
        self._dropped = 0
        self._count_lock = threading.Lock()  # the two counts (taken once per chunk, not per span)
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._broken = False
        self._config = pickle.dumps(dict(config), protocol=pickle.HIGHEST_PROTOCOL)
        self._backoff = RESTART_SECONDS[0]
        self._restart_at = 0.0
        self._child = self._start_child()
        self._thread = threading.Thread(target=self._run, name="SpanPipe", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Spans dropped because the queue was full (or the child was gone)."""
        return self._dropped

    @property
    def child_pid(self) -> int:
        return self._child.pid

    @property
    def child_exit_code(self) -> int | None:
        """None while the export process runs."""
        return self._child.poll()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context.trace_flags.sampled:
            self._put(span_record(span))

    def put(self, span: PipeSpan) -> None:
        """Queue a sampled :class:`PipeSpan` at its end."""
        self._put(span.record())

    def _put(self, record: tuple[Any, ...]) -> None:
        pending = self._pending
        pending.append(record)
        if len(pending) >= self._chunk:
            self._pack()

    def _pack(self) -> None:
        """The pending records, pickled together onto the queue (from any thread: ``popleft`` hands
        each record to exactly one caller). Over the queue's bound they are dropped and counted."""
        pending = self._pending
        records: list[tuple[Any, ...]] = []
        while len(records) < self._chunk:
            try:
                records.append(pending.popleft())
            except IndexError:
                break
        if not records:
            return
        with self._count_lock:
            room = self._queued + len(records) <= self._max_queue
            if room:
                self._queued += len(records)
        if not room:
            self._count_dropped(len(records))
            return
        self._queue.append((len(records), pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)))
        if self._queued >= self._batch:
            self._wake.set()

    def _pack_all(self) -> None:
        while self._pending:
            self._pack()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Hand every queued span to the child now (it exports them in the order received)."""
        self._pack_all()
        self._send_queued()
        return not self._broken

    def shutdown(self) -> None:
        """Send what is queued, close the pipe, wait for the child to export it all and exit."""
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join()
        if self._broken:  # the export process died since the last write: one more, for the last spans
            self._restart()
        self._pack_all()
        self._send_queued()
        if self._queue:
            self._count_dropped(sum(count for count, _ in self._queue))
            self._queue.clear()
        try:
            if self._child.stdin is not None:
                self._child.stdin.close()
        except OSError:
            pass
        try:
            self._child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            log.warning("the span export process (pid %d) did not finish in 60 s; stopping it", self._child.pid)
            self._child.kill()
            self._child.wait()
        if self._dropped:
            log.warning("%d spans were dropped (export queue full or export process gone)", self._dropped)

    def _run(self) -> None:
        while not self._stopping:
            woken = self._wake.wait(min(self._delay, self._backoff) if self._broken else self._delay)
            self._wake.clear()
            if self._broken and not self._stopping and time.monotonic() >= self._restart_at:
                self._restart()
            if woken and not self._stopping:  # a full batch queued: full batches only, the rest with the next
                self._send_queued(full_only=True)
                continue
            self._pack_all()  # the schedule (OTEL_BSP_SCHEDULE_DELAY): everything
            self._send_queued()

    def _send_queued(self, *, full_only: bool = False) -> None:
        """Send the queue in batches of ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` spans (the export process
        exports each message as one batch: one request to the ingestion endpoint). ``full_only``: a
        last batch smaller than that stays queued, to go first in the next one. Sending the remainder
        at once, as woken, made a second request of a few spans after many full ones (the queue grows
        while the writer waits for the GIL); each request costs the export process ~10 ms of CPU, and
        without them it uses about a fifth less (~105 to ~85 µs a traced request, concurrency 16)."""
        queue = self._queue
        with self._send_lock:
            while queue and not self._broken:
                batch, spans = [], 0
                while queue and spans < self._batch:
                    batch.append(queue.popleft())
                    spans += batch[-1][0]
                if full_only and spans < self._batch:
                    queue.extendleft(reversed(batch))
                    return
                if not self._send(b"".join(blob for _, blob in batch)):  # pickles, one after another
                    queue.extendleft(reversed(batch))  # for the next export process (it never saw them; still counted)
                    continue
                with self._count_lock:
                    self._queued -= spans
                if time.monotonic() - self._started_at > RESTART_SECONDS[1]:
                    self._backoff = RESTART_SECONDS[0]  # this one has lived: the next death waits 1 s again

    def _send(self, payload: bytes) -> bool:
        stdin = self._child.stdin
        if self._broken or stdin is None:
            return False
        try:
            stdin.write(_HEADER.pack(len(payload)) + payload)
            stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self._broken = True
            self._restart_at = time.monotonic() + self._backoff
            log.error("the span export process (pid %d) is gone (exit code %s); starting another in %g s, "
                      "spans wait in the queue meanwhile", self._child.pid, self._child.poll(), self._backoff)
            return False
        return True

    def _start_child(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)}
        child = subprocess.Popen([sys.executable, "-P", str(CHILD)], stdin=subprocess.PIPE, env=env)
        self._child, self._started_at = child, time.monotonic()
        self._send(self._config)
        return child

    def _restart(self) -> None:
        """Another export process for a dead one (the writer thread's, with the send lock)."""
        with self._send_lock:
            old = self._child
            try:
                if old.stdin is not None:
                    old.stdin.close()
            except OSError:
                pass
            old.poll()  # reaped, if it has exited
            self._broken = False
            self._start_child()
            if not self._broken:
                log.warning("span export process restarted (pid %d, was %d)", self._child.pid, old.pid)
            self._backoff = min(self._backoff * 2, RESTART_SECONDS[1])

    def _count_dropped(self, count: int) -> None:
        with self._count_lock:
            first = self._dropped == 0
            self._dropped += count
        if first:
            log.warning("trace export queue full: spans dropped (counted in gateway_trace_spans_dropped_total)")


_PIPES: list[SpanPipe] = []
_DIRECT: list[tuple[TracerProvider, SpanPipe]] = []


def register(pipe: SpanPipe, sole_processor_of: TracerProvider | None = None) -> SpanPipe:
    """Count ``pipe``'s drops in ``gateway_trace_spans_dropped_total``; with ``sole_processor_of``
    (``pipe`` is that provider's only span processor) the gateway's own spans skip the SDK's span
    object (:func:`pipe_tracer`)."""
    _PIPES.append(pipe)
    if sole_processor_of is not None:
        _DIRECT.append((sole_processor_of, pipe))
    return pipe


def pipe_tracer(provider: trace.TracerProvider, name: str, version: str | None = None,
                schema_url: str | None = None) -> trace.Tracer | None:
    """A :class:`PipeTracer` when ``provider``'s only processor is a span pipe, else None."""
    for sdk_provider, pipe in _DIRECT:
        if sdk_provider is provider:
            return PipeTracer(sdk_provider, pipe, name, version, schema_url)
    return None


def spans_dropped() -> int:
    """Spans dropped by this process's span pipes (0 without one)."""
    return sum(pipe.dropped for pipe in _PIPES)


class DroppedSpans(Collector):
    """``gateway_trace_spans_dropped_total``: sampled spans never handed to the exporter
    (``count``: this process's span pipes by default)."""

    def __init__(self, count: Callable[[], int] = spans_dropped) -> None:
        self._count = count

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("gateway_trace_spans_dropped", "Sampled spans dropped before export "
                                     "(export queue full or export process gone)")
        family.add_metric([], self._count())
        yield family
