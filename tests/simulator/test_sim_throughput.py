"""Zero-latency mode serves a burst of requests (throughput is printed, never asserted)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson

DEPLOYMENT = "gpt-35-turbo-16k"
TOTAL = 2000
CONCURRENCY = 40


async def test_zero_latency_serves_2000_requests(start_sim) -> None:
    sim = await start_sim(zero_latency=True, latency_ms=500.0)
    url = f"{sim.url}openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2024-06-01"
    body = orjson.dumps({"messages": [{"role": "user", "content": "ping"}], "max_tokens": 20})
    headers = {"api-key": "sim-key-alpha", "content-type": "application/json"}
    statuses: list[int] = []

    async def worker(http: aiohttp.ClientSession, count: int) -> None:
        for _ in range(count):
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()
                statuses.append(response.status)

    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(worker(http, TOTAL // CONCURRENCY) for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    rate = len(statuses) / elapsed
    print(
        f"\nsimulator zero-latency: {len(statuses)} requests in {elapsed:.2f}s = {rate:.0f} req/s",
        "(in-process client)",
    )

    assert statuses == [200] * (TOTAL // CONCURRENCY * CONCURRENCY)
    assert sim.stats.requests == len(statuses)
