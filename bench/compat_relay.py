"""The compatible API's pass-through against ``/openai/chat`` and direct, side by side in one run.

Starts the simulator (zero-latency mode) and the REST gateway (``python -m http_api``) as separate
processes on 127.0.0.1, then:

1. wrk at concurrency 1 and 16: the simulator directly, ``POST /openai/chat`` (openai SDK path) and
   ``POST /openai/deployments/{deployment}/chat/completions`` (the aiohttp relay), same conversation;
2. streaming time to first token at concurrency 1: an aiohttp client times the first content event,
   direct, through the compatible API (usage chunk added and stripped) and through ``/openai/stream``
   (SSE), the three interleaved request by request.

    .venv/bin/python bench/compat_relay.py [--duration 10] [--streams 400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import DEPLOYMENT, KEY, Processes, bench_config, lua_script, run_wrk  # noqa: E402

VERSION = "2024-10-21"
CONVERSATION = [{"role": "system", "content": "You are a helpful, precise and friendly assistant."},
                {"role": "user", "content": "Tell me about Milan"}]


def first_token_marker(line: bytes) -> bool:
    return b'"delta":{"content":"' in line or line.startswith(b'data: {"delta":')


async def time_to_first_token(session: aiohttp.ClientSession, url: str, body: bytes,
                              headers: dict[str, str]) -> float:
    started = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as response:
        assert response.status == 200, await response.text()
        first = None
        async for line in response.content:
            if first is None and first_token_marker(line):
                first = time.perf_counter() - started
        assert first is not None, "no content event"
        return first * 1000


async def ttft(sim_port: int, gw_port: int, count: int) -> dict[str, list[float]]:
    stream_body = json.dumps({"messages": CONVERSATION, "max_tokens": 100, "stream": True}).encode()
    targets = {
        "direct": (f"http://127.0.0.1:{sim_port}/openai/deployments/{DEPLOYMENT}/chat/completions"
                   f"?api-version={VERSION}", stream_body, {"api-key": KEY, "Content-Type": "application/json"}),
        "compat": (f"http://127.0.0.1:{gw_port}/openai/deployments/{DEPLOYMENT}/chat/completions"
                   f"?api-version={VERSION}", stream_body,
                   {"api-key": "caller", "X-Tenant": "bench", "Content-Type": "application/json"}),
        "/openai/stream": (f"http://127.0.0.1:{gw_port}/openai/stream?tenant=bench",
                           json.dumps(CONVERSATION[1:]).encode(),
                           {"Accept": "text/event-stream", "Content-Type": "application/json"}),
    }
    samples: dict[str, list[float]] = {name: [] for name in targets}
    async with aiohttp.ClientSession() as session:
        for _ in range(20):  # warm up
            for url, body, headers in targets.values():
                await time_to_first_token(session, url, body, headers)
        for _ in range(count):
            for name, (url, body, headers) in targets.items():
                samples[name].append(await time_to_first_token(session, url, body, headers))
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--streams", type=int, default=400, help="streams per target for TTFT (default 400)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmpdir, Processes() as procs:
        tmp = Path(tmpdir)
        sim_port = procs.simulator()
        gw_port = procs.gateway(bench_config(tmp, sim_port))
        body = json.dumps({"messages": CONVERSATION, "max_tokens": 100})
        json_headers = {"Content-Type": "application/json"}
        targets = {
            "direct": (f"http://127.0.0.1:{sim_port}/openai/deployments/{DEPLOYMENT}/chat/completions"
                       f"?api-version={VERSION}", lua_script(tmp, {"api-key": KEY, **json_headers}, body)),
            "/openai/chat": (f"http://127.0.0.1:{gw_port}/openai/chat?tenant=bench",
                             lua_script(tmp, json_headers, json.dumps(CONVERSATION[1:]))),
            "compat": (f"http://127.0.0.1:{gw_port}/openai/deployments/{DEPLOYMENT}/chat/completions"
                       f"?api-version={VERSION}",
                       lua_script(tmp, {"api-key": "caller", "X-Tenant": "bench", **json_headers}, body)),
        }
        for url, script in targets.values():
            run_wrk(url, script, 4, 2)
        rows = [(c, {name: run_wrk(url, script, c, args.duration) for name, (url, script) in targets.items()})
                for c in (1, 16)]
        first = asyncio.run(ttft(sim_port, gw_port, args.streams))
    print(f"\n{'conc':>4} | {'target':<14} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} | {'vs direct':>9} "
          f"{'vs /openai/chat':>15} | errors")
    for connections, result in rows:
        for name, r in result.items():
            print(f"{connections:>4} | {name:<14} {r['rps']:>7.0f} {r['p50']:>7.2f} {r['p99']:>7.2f} | "
                  f"{r['rps'] / result['direct']['rps']:>8.2f}x {r['rps'] / result['/openai/chat']['rps']:>14.2f}x"
                  f" | {int(r['errors'])}")
    print(f"\nstreaming time to first token, concurrency 1, {args.streams} streams each (ms)")
    base = statistics.median(first["direct"])
    for name, values in first.items():
        values.sort()
        p50, p90 = statistics.median(values), values[int(len(values) * 0.9)]
        print(f"  {name:<14} p50 {p50:6.2f}  p90 {p90:6.2f}  added p50 {p50 - base:+6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
