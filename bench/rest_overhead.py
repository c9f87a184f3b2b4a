"""Gateway overhead: wrk against the upstream directly and through ``/openai/chat``, in one run.

Starts the simulator in zero-latency mode (the upstream must not be the bottleneck) and the REST
gateway (``python -m http_api``) as separate processes on 127.0.0.1, then runs wrk at concurrency
1 and 16 against both and prints throughput, p50/p99 latency and their ratios.

    .venv/bin/python bench/rest_overhead.py [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import BODY, DEPLOYMENT, KEY, Processes, bench_config, lua_script, run_wrk  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmpdir, Processes() as procs:
        tmp = Path(tmpdir)
        sim_port = procs.simulator()
        gw_port = procs.gateway(bench_config(tmp, sim_port))
        upstream_body = json.dumps({"messages": [{"role": "system", "content": "x"}, *BODY],
                                    "max_tokens": 100})
        direct = (f"http://127.0.0.1:{sim_port}/openai/deployments/{DEPLOYMENT}/chat/completions"
                  "?api-version=2024-06-01",
                  lua_script(tmp, {"api-key": KEY, "Content-Type": "application/json"}, upstream_body))
        gateway = (f"http://127.0.0.1:{gw_port}/openai/chat?tenant=bench",
                   lua_script(tmp, {"Content-Type": "application/json"}, json.dumps(BODY)))
        for url, script in (direct, gateway):  # warm up both paths
            run_wrk(url, script, 4, 2)
        rows = []
        for connections in (1, 16):
            d = run_wrk(*direct, connections, args.duration)
            g = run_wrk(*gateway, connections, args.duration)
            rows.append((connections, d, g))
    print(f"\n{'conc':>4} | {'direct rps':>10} {'p50 ms':>7} {'p99 ms':>7} | {'gateway rps':>11} "
          f"{'p50 ms':>7} {'p99 ms':>7} | {'rps ratio':>9} {'added p50 ms':>12} | errors")
    for connections, d, g in rows:
        print(f"{connections:>4} | {d['rps']:>10.0f} {d['p50']:>7.2f} {d['p99']:>7.2f} | {g['rps']:>11.0f} "
              f"{g['p50']:>7.2f} {g['p99']:>7.2f} | {g['rps'] / d['rps']:>9.2f} {g['p50'] - d['p50']:>12.2f} "
              f"| {int(d['errors'] + g['errors'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
