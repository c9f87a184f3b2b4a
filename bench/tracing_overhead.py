"""Cost of tracing: gateway ``POST /openai/chat`` throughput with Application Insights tracing on
(100 % sampled, every request carrying a sampled ``traceparent``, the real exporter posting to a
local ingestion receiver) vs off, in one run.

Starts, on 127.0.0.1: the simulator (zero-latency mode), a local ingestion receiver (this file
with ``--receiver``: counts the envelopes it is sent), and ``--processes`` REST gateways (``python
-m http_api``) of each kind, without and with ``APPLICATIONINSIGHTS_CONNECTION_STRING``. wrk loads
them at concurrency 1 and 16, in alternating slices (off, on, off, on, ...; ``--slices`` of
``--duration / --slices`` seconds each, the pairs of processes taking turns) so that load from
elsewhere on a shared machine falls on both alike; throughput is all requests over all slices,
p50/p99 the median of the slices'. Several processes a kind, because identical untraced gateways
started together served 1,416 to 1,519 requests a second in the same run (alternating 2 s
slices): one process a kind put up to ±0.04 of that luck (memory layout) into the ratio. After
each traced slice it waits until the receiver has every request's envelope, so that the export
process's work on that slice's last batch does not fall into the next untraced slice.
Everything is stopped by PID. Statsbeat and live metrics are off: nothing leaves the machine. At
the end it waits until the receiver has everything and prints what it received and the traced
gateways' ``gateway_trace_spans_dropped_total``.

    .venv/bin/python bench/tracing_overhead.py [--duration 24] [--processes 3] [--upstream fake]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import BODY, Processes, bench_config, combined, free_port, lua_script, run_wrk  # noqa: E402

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def receiver(port: int) -> None:
    """A stand-in ingestion endpoint: accepts every batch and counts envelopes by type (each has one
    ``baseType``; read with a pattern rather than a JSON parse: the real endpoint is not on these cores)."""
    import re

    from aiohttp import web

    counts: dict[str, int] = {}
    base_type = re.compile(rb'"baseType":\s*"(\w+)"')

    async def track(request: web.Request) -> web.Response:
        raw = await request.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        kinds = base_type.findall(raw)
        for kind in kinds:
            name = kind.decode()
            counts[name] = counts.get(name, 0) + 1
        return web.json_response({"itemsReceived": len(kinds), "itemsAccepted": len(kinds), "errors": []})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(counts)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v2.1/track", track)
    app.router.add_post("//v2.1/track", track)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def settled(url: str, quiet: float = 8.0, limit: float = 120.0) -> dict[str, int]:
    """The receiver's counts once unchanged for ``quiet`` seconds (the export schedule delay is 5 s)."""
    deadline = time.monotonic() + limit
    last: dict[str, int] = {}
    since = time.monotonic()
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url) as response:
            counts = json.loads(response.read())
        if counts != last:
            last, since = counts, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.5)
    return last


def _metric(port: int, name: str) -> float:
    """The sum of a gateway's ``name`` series (``name{`` for labelled ones)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
        metrics = response.read().decode()
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name))


def _answered(on_ports: list[int]) -> float:
    return sum(_metric(port, "gateway_requests_total{") for port in on_ports)


def drained(ingest_port: int, on_ports: list[int], limit: float = 30.0) -> None:
    """Wait until the receiver has a request envelope for every request the traced gateways answered
    (a last partial batch goes out on the export schedule, ``OTEL_BSP_SCHEDULE_DELAY``, 5 s)."""
    answered = _answered(on_ports)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{ingest_port}/stats") as response:
            if json.loads(response.read()).get("RequestData", 0) >= answered:
                return
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=24, help="seconds per kind and concurrency (default 24)")
    parser.add_argument("--slices", type=int, default=12,
                        help="alternating off/on wrk runs per concurrency (default 12: the shared machine's speed "
                             "changes within seconds, and a single run of 5 slices moved by +-0.05)")
    parser.add_argument("--processes", type=int, default=3,
                        help="gateways of each kind, taking turns (default 3; see above)")
    parser.add_argument("--upstream", choices=["simulator", "fake"], default="simulator",
                        help="the simulator in zero-latency mode (default), or bench/fake_upstream.py (fixed "
                             "answers, the hot-path bench's: next to no CPU, as a remote Azure OpenAI takes none here)")
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        receiver(args.receiver)
        return 0
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    ingest_port = free_port()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "APPLICATIONINSIGHTS_"))}
    on_env = {**base_env, "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
              "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
              "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-4000-8000-000000000000;"
                                                       f"IngestionEndpoint=http://127.0.0.1:{ingest_port}/"}
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir, Processes() as procs:
        tmp = Path(tmpdir)
        storage = tmp / "telemetry"  # the exporter's offline storage (under the temp dir): this run's own, so that
        storage.mkdir()  # no blob left by another run with the same key is resent during this one
        on_env["TMPDIR"] = str(storage)
        config = bench_config(tmp, procs.simulator() if args.upstream == "simulator" else procs.fake_upstream())
        procs.start([sys.executable, __file__, "--receiver", str(ingest_port)], ingest_port)
        count = max(1, args.processes)
        off_ports = [procs.gateway(config, env=base_env) for _ in range(count)]
        on_ports = [procs.gateway(config, env=on_env) for _ in range(count)]
        script = lua_script(tmp, {"Content-Type": "application/json", "traceparent": TRACEPARENT},
                            json.dumps(BODY))
        chat = "http://127.0.0.1:{}/openai/chat?tenant=bench"
        pairs = [(chat.format(off_port), chat.format(on_port)) for off_port, on_port in zip(off_ports, on_ports,
                                                                                             strict=True)]
        for pair in pairs:  # warm up every one
            for url in pair:
                run_wrk(url, script, 4, 2)
        slice_seconds = max(1, args.duration // max(1, args.slices))
        for connections in (1, 16):
            runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
            for index in range(max(1, args.slices)):
                off, on = pairs[index % count]
                runs["off"].append(run_wrk(off, script, connections, slice_seconds))
                runs["on"].append(run_wrk(on, script, connections, slice_seconds))
                drained(ingest_port, on_ports)  # the export processes' leftovers must not fall in the next off slice
            rows.append((connections, combined(runs["off"]), combined(runs["on"])))
        received = settled(f"http://127.0.0.1:{ingest_port}/stats")
        dropped = sum(_metric(port, "gateway_trace_spans_dropped_total") for port in on_ports)
        answered = _answered(on_ports)
    print(f"\n{'conc':>4} | {'off rps':>8} {'p50 ms':>7} {'p99 ms':>7} | {'on rps':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"| {'on/off':>6} | errors")
    for connections, off_r, on_r in rows:
        print(f"{connections:>4} | {off_r['rps']:>8.0f} {off_r['p50']:>7.2f} {off_r['p99']:>7.2f} | "
              f"{on_r['rps']:>8.0f} {on_r['p50']:>7.2f} {on_r['p99']:>7.2f} | {on_r['rps'] / off_r['rps']:>6.2f} "
              f"| {int(off_r['errors'] + on_r['errors'])}")
    print(f"envelopes received by the local ingestion endpoint: {received}")
    print(f"traced gateways ({count}): {answered:.0f} requests answered (gateway_requests_total), "
          f"{dropped:.0f} spans dropped (gateway_trace_spans_dropped_total)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
