"""Gateway overhead: wrk against the upstream directly and through ``/openai/chat``, in one run.

Starts the simulator in zero-latency mode (the upstream must not be the bottleneck) and the REST
gateway (``python -m http_api``) as separate processes on 127.0.0.1, then runs wrk at concurrency
1 and 16 against both and prints throughput, p50/p99 latency and their ratios.

    .venv/bin/python bench/rest_overhead.py [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localrun.ports import free_port, wait_port  # noqa: E402

KEY = "bench-key"
DEPLOYMENT = "gpt-35-turbo-16k"
BODY = [{"role": "user", "content": "Tell me about Milan"}]


def lua_script(tmp: Path, headers: dict[str, str], body: str) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    path = tmp / f"req{len(list(tmp.iterdir()))}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_wrk(url: str, script: Path, connections: int, duration: int) -> dict[str, float]:
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency",
         "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": to_ms(lat["50"]), "p99": to_ms(lat["99"]),
            "errors": float(errors.group(1)) if errors else 0.0}


def to_ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    sim_port, gw_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        config = tmp / "appsettings.json"
        config.write_text(json.dumps({"AzureOpenAI": {"Services": {"BenchOpenAI": {
            "Endpoint": f"http://127.0.0.1:{sim_port}/", "ApiKey": KEY, "Deployment": DEPLOYMENT,
            "Model": DEPLOYMENT, "MaxResponseTokens": 100, "MaxRetries": 0}}}}))
        try:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "simulator", "--port", str(sim_port), "--api-key", KEY,
                 "--zero-latency", "--log-level", "WARNING", "--deployment", DEPLOYMENT], cwd=ROOT))
            wait_port(sim_port, procs[-1])
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "http_api", "--config", str(config), "--port", str(gw_port)], cwd=ROOT))
            wait_port(gw_port, procs[-1])
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
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=15)
    print(f"\n{'conc':>4} | {'direct rps':>10} {'p50 ms':>7} {'p99 ms':>7} | {'gateway rps':>11} "
          f"{'p50 ms':>7} {'p99 ms':>7} | {'rps ratio':>9} {'added p50 ms':>12} | errors")
    for connections, d, g in rows:
        print(f"{connections:>4} | {d['rps']:>10.0f} {d['p50']:>7.2f} {d['p99']:>7.2f} | {g['rps']:>11.0f} "
              f"{g['p50']:>7.2f} {g['p99']:>7.2f} | {g['rps'] / d['rps']:>9.2f} {g['p50'] - d['p50']:>12.2f} "
              f"| {int(d['errors'] + g['errors'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
