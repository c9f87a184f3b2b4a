"""One "gateway instance" for the multi-process state-store tests and the bench.

Reads a JSON job from stdin (connection string, table, pool, lease size, count, concurrency),
builds the store the way a host does (``build_state_store``), prints ``ready``, waits for ``go``
on stdin so all workers start together, takes ``count`` slots with ``concurrency`` asyncio callers
and prints one JSON line: ``{"slots": [...], "seconds": s, "fallbacks": n}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from prometheus_client import CollectorRegistry

from core._build import build_state_store
from core.config import Settings


async def run(job: dict[str, object]) -> dict[str, object]:
    settings = Settings.model_validate(
        {
            "statestore": {
                "type": job.get("type", "table"),
                "tablename": job.get("table", "gatewaystate"),
                "leasesize": job.get("lease", 1),
                "timeoutms": job.get("timeout_ms", 10_000),
                "connectionstring": job.get("connection_string", ""),
            }
        }
    )
    registry = CollectorRegistry()
    store = build_state_store(settings, registry=registry)
    pool, count = str(job.get("pool", "default")), int(str(job.get("count", 250)))
    concurrency = max(1, int(str(job.get("concurrency", 1))))
    slots: list[int] = []

    async def caller(n: int) -> None:
        for _ in range(n):
            slots.append(await store.next_slot(pool))

    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # "go"
    started = time.perf_counter()
    shares = [count // concurrency + (1 if i < count % concurrency else 0) for i in range(concurrency)]
    await asyncio.gather(*(caller(n) for n in shares))
    seconds = time.perf_counter() - started
    await store.aclose()
    fallbacks = sum(
        s.value for m in registry.collect() for s in m.samples if s.name == "gateway_state_store_fallbacks_total"
    )
    return {"slots": slots, "seconds": seconds, "fallbacks": fallbacks}


def main() -> None:
    job = json.loads(sys.stdin.readline())
    print(json.dumps(asyncio.run(run(job))), flush=True)


if __name__ == "__main__":
    main()
