"""gRPC vs REST: unary chat throughput and latency through the gateway's two hosts, in one run.

Starts, as separate processes on 127.0.0.1, one zero-latency simulator (the upstream must not be
the bottleneck), the REST host (``python -m http_api`` on uvicorn) and the gRPC host
(``python -m grpc_host``), both on the same settings. Then, for each concurrency, drives the same
conversation through ``POST /openai/chat`` (aiohttp, keep-alive pool) and ``GetChatCompletions``
(grpc.aio, one HTTP/2 channel) for a fixed time and prints requests/s, p50 and p99.

    .venv/bin/python bench/grpc_vs_rest.py [--duration 10] [--concurrency 1 16]

Both load generators are Python asyncio clients in this process, so client overhead is part
of every figure; on a 2-core machine the five parties share the CPUs. Compare the rows, not
the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localrun.ports import free_port, wait_port  # noqa: E402
from protos import openai_pb2, openai_pb2_grpc  # noqa: E402

KEY = "bench-key"
DEPLOYMENT = "gpt-35-turbo-16k"
TENANT = "contoso"
CONVERSATION = [{"role": "user", "content": "Tell me about Milan"}]


@dataclass(frozen=True)
class Result:
    protocol: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


Call = Callable[[], Awaitable[None]]


async def drive(call: Call, concurrency: int, duration: float) -> tuple[int, list[float]]:
    """``concurrency`` workers call back to back until ``duration`` is over."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                await call()
            except (grpc.aio.AioRpcError, aiohttp.ClientError, AssertionError):
                errors += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors, latencies


async def measure(protocol: str, call: Call, concurrency: int, duration: float) -> Result:
    await drive(call, concurrency, min(2.0, duration / 4))  # warm-up: connections, caches
    started = time.perf_counter()
    errors, latencies = await drive(call, concurrency, duration)
    return Result(protocol, concurrency, len(latencies), errors, time.perf_counter() - started, latencies)


async def run(rest_port: int, grpc_port: int, levels: list[int], duration: float) -> list[Result]:
    results: list[Result] = []
    body = json.dumps(CONVERSATION).encode()
    request = openai_pb2.GetChatCompletionsRequest(
        tenant=TENANT, conversation=[openai_pb2.GrpcMessage(**m) for m in CONVERSATION]
    )
    connector = aiohttp.TCPConnector(limit=max(levels))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
    ):
        stub = openai_pb2_grpc.OpenAIServiceGrpcStub(channel)
        url = f"http://127.0.0.1:{rest_port}/openai/chat?tenant={TENANT}"

        async def rest() -> None:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                assert r.status == 200
                assert await r.read()

        async def unary() -> None:
            assert (await stub.GetChatCompletions(request, timeout=30)).result

        for level in levels:
            results.append(await measure("REST  /openai/chat", rest, level, duration))
            results.append(await measure("gRPC  GetChatCompletions", unary, level, duration))
    return results


def table(results: list[Result]) -> str:
    lines = [
        "| protocol | concurrency | requests | errors | req/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.protocol.strip()} | {r.concurrency} | {r.requests} | {r.errors} | {r.rps:.0f} "
            f"| {r.percentile(0.50):.2f} | {r.percentile(0.99):.2f} |"
        )
    return "\n".join(lines)


def start_servers(tmp: Path, procs: list[subprocess.Popen[bytes]]) -> tuple[int, int]:
    sim_port, rest_port, grpc_port, metrics_port = free_port(), free_port(), free_port(), free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": ROOT}
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "simulator", "--name", "AlphaOpenAI", "--port", str(sim_port),
         "--api-key", KEY, "--deployment", DEPLOYMENT, "--zero-latency", "--log-level", "warning"],
        **quiet))  # fmt: skip
    wait_port(sim_port, procs[-1])
    service = {"Endpoint": f"http://127.0.0.1:{sim_port}/", "ApiKey": KEY, "Deployment": DEPLOYMENT,
               "MaxRetries": 0}  # fmt: skip
    config = tmp / "gateway.json"
    config.write_text(json.dumps({
        "AzureOpenAI": {"Services": {"AlphaOpenAI": service}},
        "TenantAzureOpenAIMappings": {TENANT: "AlphaOpenAI"},
    }))  # fmt: skip
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "http_api", "--config", str(config), "--port", str(rest_port)], **quiet))
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "grpc_host", "--config", str(config), "--port", str(grpc_port),
         "--metrics-port", str(metrics_port), "--log-level", "WARNING"], **quiet))  # fmt: skip
    wait_port(rest_port, procs[-2])
    wait_port(grpc_port, procs[-1])
    return rest_port, grpc_port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16], help="levels (default 1 16)")
    args = parser.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rest_port, grpc_port = start_servers(Path(tmp), procs)
            results = asyncio.run(run(rest_port, grpc_port, args.concurrency, args.duration))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(table(results))
    return 0 if all(r.errors == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
