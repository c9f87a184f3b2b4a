"""Round-robin state store benchmark: in-memory vs Azure Table storage (Azurite), in one run.

1. Selections per second from 4 OS processes (``tests/core/state/table_worker.py``), each with
   ``--callers`` concurrent asyncio callers: memory (a counter per process, not shared),
   Table with K = 1 (strict global alternation) and Table with K = 16 (leases).
2. Gateway ``POST /openai/chat`` throughput with each store: the local REST server
   (``python -m http_api``, one uvicorn process) in front of two simulated Azure OpenAI
   instances (``python -m simulator --zero-latency``), loaded by ``hey``.

Everything binds 127.0.0.1 and is stopped by PID. Needs Azurite (scripts/azurite.sh install)
and Debian's ``hey``. Run: ``.venv/bin/python bench/state_store.py`` (see --help).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localrun.ports import free_port, wait_port  # noqa: E402

WORKER = ROOT / "tests" / "core" / "state" / "table_worker.py"
AZURITE = ROOT / "scripts" / "azurite.sh"
DEPLOYMENT = "gpt-35-turbo-16k"
BODY = '[{"role":"user","content":"Say hello"}]'


@dataclass(frozen=True)
class Store:
    label: str
    type: str
    lease: int = 1


def stores(leases: str) -> tuple[Store, ...]:
    """memory, then one Table store per lease size in ``leases`` ("1,16")."""
    return (Store("memory", "memory"), *(Store(f"table K={k}", "table", int(k)) for k in leases.split(",")))


@contextmanager
def azurite(workdir: Path) -> Iterator[str]:
    port = free_port()
    subprocess.run(["bash", str(AZURITE), "start", str(port), str(workdir)], check=True, stdout=subprocess.DEVNULL)
    try:
        out = subprocess.run(["bash", str(AZURITE), "connection-string", str(port)], check=True,
                             capture_output=True, text=True)  # fmt: skip
        yield out.stdout.strip()
    finally:
        subprocess.run(["bash", str(AZURITE), "stop", str(workdir)], check=False, stdout=subprocess.DEVNULL)


@contextmanager
def process(args: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A server process; its output is discarded (a full pipe would stall it)."""
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def selections(store: Store, conn: str, *, processes: int, count: int, callers: int) -> tuple[float, float, int]:
    """(selections/s over all processes, fallbacks, duplicate slots) of workers started together.

    Duplicates can only come from fallbacks (local state); memory stores are per process by design.
    """
    job = {"type": store.type, "connection_string": conn, "table": f"bench{store.type}{store.lease}",
           "lease": store.lease, "count": count, "concurrency": callers, "timeout_ms": 10_000}  # fmt: skip
    procs = [subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(processes)]  # fmt: skip
    try:
        for proc in procs:
            assert proc.stdin and proc.stdout
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("worker failed to start")
        started = time.perf_counter()
        for proc in procs:
            assert proc.stdin
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json.loads(proc.communicate(timeout=600)[0]) for proc in procs]
        elapsed = time.perf_counter() - started
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    slots = [s for r in results for s in r["slots"]]
    duplicates = 0 if store.type == "memory" else len(slots) - len(set(slots))
    return len(slots) / elapsed, sum(float(r["fallbacks"]) for r in results), duplicates


def gateway_env(store: Store, conn: str, ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AzureOpenAI__", "StateStore__"))}
    for name, port in ports.items():
        prefix = f"AzureOpenAI__Services__{name}__"
        env |= {prefix + "Endpoint": f"http://127.0.0.1:{port}", prefix + "ApiKey": f"sim-key-{name.lower()}",
                prefix + "Deployment": DEPLOYMENT, prefix + "MaxRetries": "0"}  # fmt: skip
    env |= {"StateStore__Type": store.type, "StateStore__LeaseSize": str(store.lease),
            "StateStore__TableName": f"benchgw{store.lease}", "AzureWebJobsStorage": conn,
            "PYTHONPATH": str(ROOT)}  # fmt: skip
    return env


def hey(url: str, seconds: float, connections: int) -> tuple[float, int, int]:
    """(requests per second, 200 responses, other responses) of one ``hey`` run."""
    out = subprocess.run(
        ["hey", "-z", f"{seconds}s", "-c", str(connections), "-m", "POST", "-T", "application/json",
         "-d", BODY, url], check=True, capture_output=True, text=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)}
    return rps, codes.get(200, 0), sum(n for c, n in codes.items() if c != 200)


def gateway_throughput(store: Store, conn: str, ports: dict[str, int], seconds: float, connections: int
                       ) -> tuple[float, int, int]:  # fmt: skip
    port = free_port()
    args = [sys.executable, "-m", "http_api", "--port", str(port), "--log-level", "warning"]
    with process(args, gateway_env(store, conn, ports)) as proc:
        wait_port(port, proc)
        url = f"http://127.0.0.1:{port}/openai/chat?tenant=bench"
        hey(url, min(3.0, seconds), connections)  # warm-up: connections, lease, tiktoken
        return hey(url, seconds, connections)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--callers", type=int, default=8, help="asyncio callers per process (default 8)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per gateway run (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="hey -c (default 32)")
    parser.add_argument("--rounds", type=int, default=3, help="gateway runs per store, best kept (default 3)")
    parser.add_argument("--leases", default="1,16", help="Table lease sizes K to measure (default 1,16)")
    parser.add_argument("--skip-gateway", action="store_true")
    args = parser.parse_args()
    all_stores = stores(args.leases)
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp, azurite(Path(tmp) / "azurite") as conn:
        print(f"selections/s from {args.processes} processes x {args.callers} callers (Azurite on loopback)")
        print(f"{'store':<12} {'selections':>10} {'per second':>12} {'fallbacks':>9} {'duplicates':>10}")
        for store in all_stores:
            count = 200_000 if store.type == "memory" else 500 * store.lease
            rate, fell, dup = selections(store, conn, processes=args.processes, count=count, callers=args.callers)
            print(
                f"{store.label:<12} {count * args.processes:>10} {rate:>12,.0f} {fell:>9.0f} {dup:>10}",
                flush=True,
            )
        if args.skip_gateway:
            return 0
        if shutil.which("hey") is None:
            print("hey not found (apt-get install hey): gateway throughput skipped")
            return 0
        ports = {"AlphaOpenAI": free_port(), "BetaOpenAI": free_port()}
        instances = ",".join(f"{n}:{p}:sim-key-{n.lower()}" for n, p in ports.items())
        sim = [
            sys.executable,
            "-m",
            "simulator",
            "--instances",
            instances,
            "--zero-latency",
            "--log-level",
            "WARNING",
        ]
        with process(sim) as sim_proc:
            for port in ports.values():
                wait_port(port, sim_proc)
            print(f"\ngateway POST /openai/chat, hey -c {args.connections} for {args.seconds:.0f} s, "
                  f"best of {args.rounds}")  # fmt: skip
            print(f"{'store':<12} {'req/s':>9} {'vs memory':>9} {'200':>7} {'other':>6}")
            best: dict[str, tuple[float, int, int]] = {}
            for round_ in range(args.rounds):  # interleaved and rotated, so drift hits every store alike
                turn = round_ % len(all_stores)
                for store in all_stores[turn:] + all_stores[:turn]:
                    result = gateway_throughput(store, conn, ports, args.seconds, args.connections)
                    if store.label not in best or result[0] > best[store.label][0]:
                        best[store.label] = result
            base = best["memory"][0]
            for store in all_stores:
                rps, ok, other = best[store.label]
                print(f"{store.label:<12} {rps:>9,.0f} {rps / base:>8.2f}x {ok:>7} {other:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
