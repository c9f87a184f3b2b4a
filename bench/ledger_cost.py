"""Cost of the usage ledger on the hot path: /openai/chat throughput with the ledger on vs off, one run.

Starts a zero-latency simulator and three REST gateways (ledger off; on, in memory; on, in Table
storage on a local Azurite, flushing every second), then runs wrk at concurrency 16 against each,
twice in alternation (off, memory, table, off, memory, table) so that the machine's noise hits all
of them alike, and prints throughput and the ratios to "off".

    .venv/bin/python bench/ledger_cost.py [--duration 10]
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

from bench._harness import BODY, Processes, bench_config, free_port, lua_script, run_wrk  # noqa: E402

AZURITE = ROOT / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-table"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    args = parser.parse_args()
    if not shutil.which("wrk") or not AZURITE.exists():
        raise SystemExit("needs wrk and Azurite: run scripts/bootstrap.sh --dev")
    with tempfile.TemporaryDirectory() as tmpdir, Processes() as procs:  # gateways stop first: last flush
        tmp = Path(tmpdir)
        sim_port, table_port = procs.simulator(), free_port()
        procs.start([str(AZURITE), "--tableHost", "127.0.0.1", "--tablePort", str(table_port), "--location",
                     str(tmp / "azurite"), "--disableTelemetry", "--silent"], table_port)
        storage = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};"
                   f"TableEndpoint=http://127.0.0.1:{table_port}/devstoreaccount1;")
        variants = {
            "off": {"Ledger": {"Enabled": False}},
            "memory": {"Ledger": {"FlushSeconds": 1}},
            "table": {"Ledger": {"FlushSeconds": 1},
                      "StateStore": {"Type": "table", "ConnectionString": storage, "LeaseSize": 64}},
        }
        urls = {name: f"http://127.0.0.1:{procs.gateway(bench_config(tmp, sim_port, f'{name}.json', **extra))}"
                      "/openai/chat?tenant=bench" for name, extra in variants.items()}
        script = lua_script(tmp, {"Content-Type": "application/json"}, json.dumps(BODY))
        for url in urls.values():
            run_wrk(url, script, 4, 2)  # warm up
        rps: dict[str, list[float]] = {name: [] for name in urls}
        for _ in range(2):
            for name, url in urls.items():
                rps[name].append(run_wrk(url, script, 16, args.duration)["rps"])
    base = sum(rps["off"]) / 2
    print(f"\n{'ledger':>8} | {'req/s (two runs)':>18} | {'mean':>6} | vs off")
    for name, values in rps.items():
        mean = sum(values) / 2
        print(f"{name:>8} | {values[0]:>8.0f} {values[1]:>9.0f} | {mean:>6.0f} | {mean / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
