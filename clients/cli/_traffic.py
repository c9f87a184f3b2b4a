"""The traffic generator's engine: a seeded plan of requests, run with bounded concurrency."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from clients.cli._model import GatewayClient, Message, RequestFailed, Usage
from clients.cli._questions import random_question

SUCCESS_STATUSES = frozenset({"200", "OK"})

# What a gateway HTTP status becomes on gRPC (design.md), so `--expect-status 429` works for both.
HTTP_TO_GRPC = {
    "400": "INVALID_ARGUMENT",
    "401": "UNAUTHENTICATED",
    "403": "PERMISSION_DENIED",
    "404": "NOT_FOUND",
    "413": "INVALID_ARGUMENT",
    "429": "RESOURCE_EXHAUSTED",
    "502": "UNAVAILABLE",
    "503": "UNAVAILABLE",
    "504": "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class Planned:
    index: int
    tenant: str
    kind: str  # "chat" | "stream"
    question: str


@dataclass(frozen=True)
class Outcome:
    tenant: str
    kind: str
    status: str
    latency_s: float
    usage: Usage
    instance: str | None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS_STATUSES


def make_plan(n: int, tenants: list[str], stream_ratio: float, seed: int | None) -> list[Planned]:
    """The same seed gives the same tenants, kinds and questions in the same order."""
    rng = random.Random(seed)
    plan = []
    for index in range(n):
        tenant = rng.choice(tenants)
        kind = "stream" if rng.random() < stream_ratio else "chat"
        plan.append(Planned(index, tenant, kind, random_question(rng)))
    return plan


def expected_statuses(values: list[str], transport: str) -> frozenset[str]:
    """Normalise `--expect-status` values: HTTP numbers and gRPC code names, either transport."""
    expected: set[str] = set()
    for raw in values:
        for value in raw.split(","):
            value = value.strip().upper()
            if not value:
                continue
            expected.add(value)
            if transport == "grpc" and value in HTTP_TO_GRPC:
                expected.add(HTTP_TO_GRPC[value])
    return frozenset(expected)


async def run_one(client: GatewayClient, item: Planned, system: str | None) -> Outcome:
    messages = [Message("system", system)] if system else []
    messages.append(Message("user", item.question))
    started = time.perf_counter()
    try:
        if item.kind == "stream":
            reply = await client.stream(item.tenant, messages, _discard)
        else:
            reply = await client.chat(item.tenant, messages)
    except RequestFailed as failure:
        latency = time.perf_counter() - started
        return Outcome(item.tenant, item.kind, failure.status, latency, Usage(), None, failure.one_line())
    latency = time.perf_counter() - started
    return Outcome(item.tenant, item.kind, reply.status, latency, reply.usage, reply.instance)


def _discard(_: str) -> None:
    return None


async def run_plan(
    client: GatewayClient,
    plan: list[Planned],
    concurrency: int,
    system: str | None,
    on_done: Callable[[Outcome], None],
) -> list[Outcome]:
    """Run every planned request, at most `concurrency` at a time; results in plan order."""
    results: list[Outcome | None] = [None] * len(plan)
    pending: Iterator[Planned] = iter(plan)

    async def worker() -> None:
        for item in pending:  # a shared iterator: each item is taken by exactly one worker
            outcome = await run_one(client, item, system)
            results[item.index] = outcome
            on_done(outcome)

    workers = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, len(plan))))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
    return [r for r in results if r is not None]
