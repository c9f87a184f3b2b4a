"""What FastAPI costs on the hot routes: the local server with the hot routes dispatched in front of
FastAPI (http_api/_hot.py, the default) vs every request through FastAPI, in one run.

Two REST gateways on the same settings (Auth:Mode none, ledger off) and the fixed-response fake
upstream: ``python -m http_api`` and the same server with ``hot_routes=False``. wrk at concurrency
16 drives ``/openai/chat``, ``/openai/stream`` (SSE) and the compatible API pass-through against
each, alternating ``--rounds`` times (medians), plus the server process's CPU time per request
(steadier than req/s on a shared machine) and p50 at concurrency 1.

    flock /tmp/bench.lock .venv/bin/python bench/host_cost.py [--duration 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import BODY, DEPLOYMENT, Processes, bench_config, cpu_seconds, free_port, lua_script, run_wrk  # noqa: E402

FASTAPI_ONLY = (
    "import asyncio, sys, uvicorn; from core import load_settings; from http_api._limits import "
    "load_rest_host_settings; from http_api._server import serve; "
    "limits = load_rest_host_settings({}, {'host': '127.0.0.1', 'port': int(sys.argv[2])}); "
    "runner = asyncio.Runner(loop_factory=uvicorn.Config(app=None, loop='auto').get_loop_factory()); "
    "runner.run(serve(load_settings(json_path=sys.argv[1]), limits, hot_routes=False))"
)



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    rps: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    p50: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmpdir, Processes() as procs:
        tmp = Path(tmpdir)
        config = bench_config(tmp, procs.fake_upstream(), Auth={"Mode": "none"}, Ledger={"Enabled": False})
        hot_port = procs.gateway(config)
        servers = {"hot routes": (hot_port, procs.started[-1].pid)}
        plain_port = free_port()
        servers["FastAPI only"] = (plain_port, procs.start([sys.executable, "-c", FASTAPI_ONLY, str(config),
                                                            str(plain_port)], plain_port).pid)
        json_type = {"Content-Type": "application/json"}
        routes = {
            "/openai/chat": ("/openai/chat?tenant=bench", lua_script(tmp, json_type, json.dumps(BODY))),
            "/openai/stream": ("/openai/stream?tenant=bench",
                               lua_script(tmp, {**json_type, "Accept": "text/event-stream"}, json.dumps(BODY))),
            "compatible API": (f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2024-10-21",
                               lua_script(tmp, {"api-key": "caller", "X-Tenant": "bench", **json_type},
                                          json.dumps({"messages": BODY, "max_tokens": 100}))),
        }
        errors = 0.0
        for route, (path, script) in routes.items():
            for port, _ in servers.values():
                run_wrk(f"http://127.0.0.1:{port}{path}", script, 4, 1)  # warm-up
            for _ in range(args.rounds):
                for mode, (port, pid) in servers.items():
                    before = cpu_seconds(pid)
                    result = run_wrk(f"http://127.0.0.1:{port}{path}", script, 16, args.duration)
                    used = cpu_seconds(pid) - before
                    errors += result["errors"] + result["socket_errors"]
                    rps.setdefault((route, mode), []).append(result["rps"])
                    cpu.setdefault((route, mode), []).append(used * 1e6 / result["requests"])
            for mode, (port, _) in servers.items():
                p50[(route, mode)] = run_wrk(f"http://127.0.0.1:{port}{path}", script, 1, args.duration)["p50"]
    print(f"\n{'route':<15} | {'FastAPI only req/s':>18} | {'hot routes req/s':>16} | ratio | "
          "CPU us/request FastAPI -> hot | p50 c1 ms FastAPI -> hot")
    for route in routes:
        plain, hot = statistics.median(rps[(route, "FastAPI only")]), statistics.median(rps[(route, "hot routes")])
        cpu_plain = statistics.median(cpu[(route, "FastAPI only")])
        cpu_hot = statistics.median(cpu[(route, "hot routes")])
        print(f"{route:<15} | {plain:>18,.0f} | {hot:>16,.0f} | {hot / plain:.2f}x | "
              f"{cpu_plain:>5.0f} -> {cpu_hot:>4.0f} ({cpu_hot / cpu_plain - 1:+.0%})      | "
              f"{p50[(route, 'FastAPI only')]:.2f} -> {p50[(route, 'hot routes')]:.2f}")
    print(f"errors: {int(errors)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
