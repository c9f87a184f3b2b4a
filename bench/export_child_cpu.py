"""CPU of the span export process per span: the real ``_export_child.py`` fed span records as the
gateway's span pipe sends them, posting to a local stand-in ingestion endpoint.

Makes ``--requests`` traced REST requests' worth of records (a SERVER request span and its GenAI
attempt span, through the span pipe's ``PipeTracer`` and ``core.telemetry.Tracing``, as the
gateway does), pickles them :data:`CHUNK` at a time and sends them in batches of 512 spans to the
child's stdin. Starts, on 127.0.0.1, the receiver of ``bench/tracing_overhead.py``. A first batch
warms the child up; its CPU time (utime + stime from /proc/<pid>/stat) is read once the receiver
has that batch and again once it has everything: the difference over the spans after the first
batch is the figure. Statsbeat and live metrics are off, as in ``bench/tracing_overhead.py``.

    flock /tmp/bench.lock .venv/bin/python bench/export_child_cpu.py [--requests 20000] [--versus OTHER.py]

``--versus`` measures another version of the export process in turns with this one (e.g. ``git
show <commit>:core/telemetry/_export_child.py > /tmp/old_child.py``), best of ``--rounds`` each.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry import propagate  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from bench._harness import Processes, cpu_seconds, free_port  # noqa: E402
from core import Completion, Usage  # noqa: E402
from core.telemetry import Tracing  # noqa: E402
from core.telemetry._pipe_span import PipeSpan, PipeTracer  # noqa: E402
from core.telemetry._span_pipe import CHILD, CHUNK  # noqa: E402

HEADER = struct.Struct(">I")
BATCH = 512
CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
REST = {"url.scheme": "http", "http.request.method": "POST", "network.protocol.version": "1.1",
        "server.address": "127.0.0.1", "server.port": 8000, "url.path": "/openai/chat", "url.query": "tenant=bench",
        "http.route": "/openai/chat"}


class Records:
    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []

    def put(self, span: PipeSpan) -> None:
        self.records.append(span.record())


def records(requests: int) -> list[tuple[Any, ...]]:
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
    out = Records()
    tracer = PipeTracer(provider, out, "fastapi", "0.1", "https://opentelemetry.io/schemas/1.44.0")
    tracing = Tracing(PipeTracer(provider, out, "core.gateway"))
    parent = propagate.extract({"traceparent": CALLER})
    for _ in range(requests):
        with tracer.start_as_current_span("POST /openai/chat", context=parent, kind=SpanKind.SERVER,
                                          attributes=REST) as server:
            with tracing.attempt("chat", tenant="bench", instance="AlphaOpenAI", model="gpt-4o",
                                 endpoint="https://alpha.openai.azure.com/", attempt=1) as attempt:
                attempt.finish(Completion("Milan is in Lombardy.", "AlphaOpenAI", Usage(12, 6), usage_reported=True),
                               model="gpt-4o-2024-08-06", finish_reasons=["stop"])
            server.set_attributes({"http.response.status_code": 200})
    return out.records


def batches(spans: list[tuple[Any, ...]]) -> list[bytes]:
    chunks = [pickle.dumps(spans[i:i + CHUNK], protocol=pickle.HIGHEST_PROTOCOL) for i in range(0, len(spans), CHUNK)]
    per = BATCH // CHUNK
    return [b"".join(chunks[i:i + per]) for i in range(0, len(chunks), per)]


def received(url: str, count: int, limit: float = 300.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url) as response:
            if sum(json.loads(response.read()).values()) >= count:
                return
        time.sleep(0.05)
    raise SystemExit(f"the receiver did not get {count} envelopes in {limit} s")


def measure(child_script: Path, sent: list[bytes], spans: int, rate: float) -> tuple[float, float]:
    """One export process fed ``sent`` at ``rate`` spans a second: (CPU seconds, wall seconds) after
    its first batch."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "APPLICATIONINSIGHTS_"))}
    env.update({"APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
                "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true", "PYTHONPATH": str(ROOT)})
    config = {"connection_string": "InstrumentationKey=00000000-0000-4000-8000-000000000000;"
                                   f"IngestionEndpoint=http://127.0.0.1:{port}/",
              "resource": dict(Resource.create({"service.name": "bench"}).attributes)}
    with tempfile.TemporaryDirectory() as storage, Processes() as procs:
        env["TMPDIR"] = storage  # the exporter's offline storage goes under the temp dir
        procs.start([sys.executable, str(ROOT / "bench" / "tracing_overhead.py"), "--receiver", str(port)], port)
        stats = f"http://127.0.0.1:{port}/stats"
        child = subprocess.Popen([sys.executable, "-P", str(child_script)], stdin=subprocess.PIPE, env=env)
        assert child.stdin is not None
        try:
            message = pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)
            child.stdin.write(HEADER.pack(len(message)) + message)
            child.stdin.write(HEADER.pack(len(sent[0])) + sent[0])
            child.stdin.flush()
            received(stats, min(BATCH, spans))
            before, started = cpu_seconds(child.pid), time.monotonic()
            for index, batch in enumerate(sent[1:]):
                wait = started + index * BATCH / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                child.stdin.write(HEADER.pack(len(batch)) + batch)
                child.stdin.flush()
            received(stats, spans)
            return cpu_seconds(child.pid) - before, time.monotonic() - started
        finally:
            child.stdin.close()
            child.wait(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000, help="traced requests (2 spans each; default 20000)")
    parser.add_argument("--versus", type=Path, help="another export process script (e.g. an older _export_child.py "
                                                    "from git show), measured in turn with this one")
    parser.add_argument("--rounds", type=int, default=3, help="turns of each (default 3)")
    parser.add_argument("--rate", type=float, default=5000.0,
                        help="spans sent a second (default 5000, a traced gateway's 2,500 requests a second)")
    args = parser.parse_args()
    spans = records(args.requests)
    sent = batches(spans)
    measured = len(spans) - min(BATCH, len(spans))
    children = {"this": CHILD, **({"versus": args.versus} if args.versus else {})}
    cpu: dict[str, list[float]] = {name: [] for name in children}
    for _ in range(max(1, args.rounds)):
        for name, script in children.items():
            seconds, wall = measure(script, sent, len(spans), args.rate)
            cpu[name].append(seconds / measured * 1e6)
            print(f"{name}: {measured} spans, export process CPU {seconds:.2f} s in {wall:.2f} s wall, "
                  f"{cpu[name][-1]:.1f} us per span", flush=True)
    best = {name: min(values) for name, values in cpu.items()}
    print("best of each: " + ", ".join(f"{name} {value:.1f} us CPU per span" for name, value in best.items()))
    if args.versus:
        print(f"this / versus: {best['this'] / best['versus']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
