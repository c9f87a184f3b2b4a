"""One "replica" for the multi-process Table budget test.

Reads a JSON job from stdin (connection string, table, tenant, bucket, budget, step), prints
``ready``, waits for ``go <instant>`` and then for that wall-clock instant, so all workers start
together however late each read its ``go``, then takes ``step`` tokens at a time in
``bucket`` through the real Table adapter until refused, with 4 asyncio callers, and prints
``{"granted": n, "refusals": r}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from core.limits import Exchange, SlidingWindow, Tally
from core.limits._table import TableBudgetStore
from core.state import TableLocation
from core.state._table import open_table


async def run(job: dict[str, object]) -> dict[str, object]:
    client, credential = open_table(TableLocation(str(job["table"]), connection_string=str(job["connection_string"])))
    store = TableBudgetStore(client, credential=credential, max_attempts=400)
    step, bucket = int(str(job["step"])), int(str(job["bucket"]))
    change = Exchange(SlidingWindow(10, 10), Tally(int(str(job["budget"])), 0), bucket, Tally(step, 0), Tally(step, 0))
    granted = 0

    async def caller() -> None:
        nonlocal granted
        while True:
            grant = await store.update(str(job["tenant"]), change)
            if grant.refused:
                return
            granted += grant.granted.tokens

    print("ready", flush=True)
    start = float((await asyncio.to_thread(sys.stdin.readline)).split()[1])  # "go <time.time()>"
    await asyncio.sleep(max(0.0, start - time.time()))
    await asyncio.gather(*(caller() for _ in range(4)))
    await store.aclose()
    return {"granted": granted}


def main() -> None:
    job = json.loads(sys.stdin.readline())
    print(json.dumps(asyncio.run(run(job))), flush=True)


if __name__ == "__main__":
    main()
