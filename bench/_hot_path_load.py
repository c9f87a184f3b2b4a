"""Load that wrk cannot make, for bench/hot_path.py: gRPC calls (grpc.aio, in a process of its own so
the report's process does not compete with it), time to first token (aiohttp), and RSS from /proc."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
CONVERSATION = [{"role": "user", "content": "Tell me about Milan"}]


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def grpc_load(port: int, connections: int, seconds: int) -> dict[str, float]:
    """``GetChatCompletions`` from ``connections`` workers on one channel for ``seconds``: the figures
    run_wrk gives (rps, p50, p99, errors, socket_errors, requests)."""
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "hot_path.py"), "--grpc-load",
                          f"{port},{connections},{seconds}"], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=seconds + 60).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def grpc_client_main(spec: str) -> int:
    port, connections, seconds = (int(x) for x in spec.split(","))
    print(json.dumps(asyncio.run(_grpc_drive(port, connections, seconds))))
    return 0


async def _grpc_drive(port: int, connections: int, seconds: float) -> dict[str, float]:
    import grpc

    sys.path.insert(0, str(ROOT))
    from bench.grpc_vs_rest import drive
    from protos import openai_pb2, openai_pb2_grpc

    request = openai_pb2.GetChatCompletionsRequest(
        tenant="bench", conversation=[openai_pb2.GrpcMessage(**m) for m in CONVERSATION])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = openai_pb2_grpc.OpenAIServiceGrpcStub(channel)

        async def call() -> None:
            reply = await stub.GetChatCompletions(request, timeout=30)
            assert reply.result, "an empty answer"  # counted as an error by drive()

        began = time.perf_counter()
        errors, latencies = await drive(call, connections, seconds)
        took = time.perf_counter() - began
    latencies.sort()

    def at(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {"rps": len(latencies) / took, "p50": at(0.5), "p99": at(0.99), "errors": float(errors),
            "socket_errors": 0.0, "requests": float(len(latencies) + errors)}


def _first_token(line: bytes) -> bool:
    """A content event: the gateway's/floor's ``{"delta": "..."}`` or Azure's non-empty delta content."""
    return line.startswith(b'data: {"delta":') or (b'"delta":{"content":"' in line
                                                    and b'"delta":{"content":""' not in line)


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> float | None:
    began = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as response:
        if response.status != 200:
            return None
        first = None
        async for line in response.content:
            if first is None and _first_token(line):
                first = (time.perf_counter() - began) * 1000
        return first


async def time_to_first_token(targets: dict[str, tuple[str, bytes, dict[str, str]]], count: int
                              ) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Milliseconds to the first content event per target, ``count`` streams each, interleaved
    request by request (so drift hits all alike); and how many streams failed per target."""
    samples: dict[str, list[float]] = {name: [] for name in targets}
    failures = dict.fromkeys(targets, 0)
    async with aiohttp.ClientSession() as session:
        for _ in range(5):  # warm-up
            for url, body, headers in targets.values():
                await _one(session, url, body, headers)
        for _ in range(count):
            for name, (url, body, headers) in targets.items():
                first = await _one(session, url, body, headers)
                if first is None:
                    failures[name] += 1
                else:
                    samples[name].append(first)
    return samples, failures
