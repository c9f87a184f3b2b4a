"""Cost of the failover machinery on the hot path, in one run: the gateway's chat with every
instance healthy, against an in-process upstream that answers at once, versus that upstream called
directly with the same (truncated) prompt.

``gateway.chat`` is the whole core path without HTTP or the SDK (system prompt, truncation bound,
failover loop, token metrics); the last column is the part this issue added per request: routing
(priority groups, weighted round-robin) and health checks (cool-down, breaker, probe slot).
The machine is shared and noisy: compare the numbers of one run, not numbers of different runs.

    .venv/bin/python bench/failover_overhead.py [--requests 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import ChatMessage, build_gateway  # noqa: E402
from core._values import Usage  # noqa: E402
from core.config import ServiceSettings, Settings  # noqa: E402
from core.upstream import UpstreamReply  # noqa: E402

PROMPT = (ChatMessage("user", "Tell me about Milan"),)


class InstantUpstream:
    """Answers at once with reported usage (no HTTP): only the gateway's own work is left."""

    def __init__(self, name: str, settings: ServiceSettings) -> None:
        self.name = name
        self.settings = settings

    async def complete(self, messages: Sequence[ChatMessage]) -> UpstreamReply:
        return UpstreamReply("Milan is a city.", Usage(12, 5))

    async def open_stream(self, messages: Sequence[ChatMessage]):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


def settings(instances: int) -> Settings:
    services = {f"I{i}": {"endpoint": f"https://i{i}.openai.azure.com/", "api_key": "k", "deployment": "d",
                          "priority": 1 + i % 2, "weight": 1 + i % 3} for i in range(instances)}
    return Settings.model_validate({"azure_openai": {"services": services}})


async def measure(requests: int, instances: int) -> tuple[float, float, float]:
    gateway = build_gateway(settings(instances), upstream_factory=lambda n, s, _: InstantUpstream(n, s))
    direct = InstantUpstream("I0", settings(1).azure_openai.services["I0"])
    for _ in range(1000):  # warm up (tokenizer, caches)
        await gateway.chat("acme", PROMPT)
    started = time.perf_counter()
    for _ in range(requests):
        await direct.complete(PROMPT)
    direct_s = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(requests):
        await gateway.chat(f"t{i % 100}", PROMPT)
    gateway_s = time.perf_counter() - started
    router, health = gateway._router, gateway._health  # the per-request work this issue added
    started = time.perf_counter()
    for i in range(requests):
        first = (await router.candidates(f"t{i % 100}"))[0]
        health.begin(first)
        health.end(first)
        health.succeeded(first)
    routing_s = time.perf_counter() - started
    await gateway.aclose()
    return direct_s / requests * 1e6, gateway_s / requests * 1e6, routing_s / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    args = parser.parse_args()
    print("| instances | upstream alone µs/req | gateway.chat µs/req | of which routing + health µs/req |")
    print("|---:|---:|---:|---:|")
    for instances in (2, 8):
        direct_us, gateway_us, routing_us = asyncio.run(measure(args.requests, instances))
        print(f"| {instances} | {direct_us:.1f} | {gateway_us:.1f} | {routing_us:.1f} |")


if __name__ == "__main__":
    main()
