"""What every benchmark here needs, in one place: the zero-latency simulator and gateway processes
on 127.0.0.1, a settings file pointing at the simulator, wrk, and a stop by PID however the run ends.

    with Processes() as procs:
        sim_port = procs.simulator()
        port = procs.gateway(bench_config(tmp, sim_port))
        run_wrk(f"http://127.0.0.1:{port}/openai/chat?tenant=bench", lua_script(tmp, headers, body), 16, 10)
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from localrun.ports import free_port, wait_port  # noqa: E402 (re-exported for the benchmarks)

KEY = "bench-key"
DEPLOYMENT = "gpt-35-turbo-16k"
BODY = [{"role": "user", "content": "Tell me about Milan"}]


def bench_config(tmp: Path, sim_port: int, name: str = "appsettings.json", **sections: Any) -> Path:
    """A settings file with one instance (BenchOpenAI) on the simulator, plus ``sections``."""
    service = {"Endpoint": f"http://127.0.0.1:{sim_port}/", "ApiKey": KEY, "Deployment": DEPLOYMENT,
               "Model": DEPLOYMENT, "MaxResponseTokens": 100, "MaxRetries": 0}
    path = tmp / name
    path.write_text(json.dumps({"AzureOpenAI": {"Services": {"BenchOpenAI": service}}, **sections}))
    return path


class Processes:
    """Processes started for one benchmark; leaving the block stops them (last started first)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for proc in reversed(self.started):  # gateways before what they depend on (their last flush)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def start(self, args: list[str], port: int | None = None, *, env: Mapping[str, str] | None = None,
              timeout: float = 60.0, quiet: bool = False) -> subprocess.Popen[bytes]:
        """Start ``args`` in the repository; wait until ``port`` (if any) accepts connections.
        ``quiet``: its output goes nowhere (an access log, say)."""
        sink = subprocess.DEVNULL if quiet else None
        proc = subprocess.Popen(args, cwd=ROOT, env=dict(env) if env is not None else None, stdout=sink, stderr=sink)
        self.started.append(proc)
        if port is not None:
            wait_port(port, proc, timeout=timeout)
        return proc

    def simulator(self, port: int | None = None) -> int:
        """The simulator in zero-latency mode (the upstream must not be the bottleneck); its port."""
        port = port or free_port()
        self.start([sys.executable, "-m", "simulator", "--port", str(port), "--api-key", KEY, "--zero-latency",
                    "--log-level", "WARNING", "--deployment", DEPLOYMENT], port)
        return port

    def gateway(self, config: Path, port: int | None = None, *, env: Mapping[str, str] | None = None) -> int:
        """``python -m http_api`` with ``config``; its port."""
        port = port or free_port()
        self.start([sys.executable, "-m", "http_api", "--config", str(config), "--port", str(port)], port, env=env)
        return port

    def grpc_gateway(self, config: Path) -> int:
        """``python -m grpc_host`` with ``config`` (metrics on a port of its own); its port."""
        port, metrics = free_port(), free_port()
        self.start([sys.executable, "-m", "grpc_host", "--config", str(config), "--port", str(port),
                    "--metrics-port", str(metrics), "--log-level", "WARNING"], port)
        return port

    def fake_upstream(self) -> int:
        """bench/fake_upstream.py: one canned answer per request, far cheaper than the simulator."""
        port = free_port()
        self.start([sys.executable, str(ROOT / "bench" / "fake_upstream.py"), "--port", str(port)], port)
        return port

    def floor(self, upstream_port: int) -> int:
        """bench/floor.py, the minimal relay, in front of ``upstream_port``; its port."""
        port = free_port()
        self.start([sys.executable, str(ROOT / "bench" / "floor.py"), "--port", str(port),
                    "--upstream", f"http://127.0.0.1:{upstream_port}"], port)
        return port


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
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": rps, "p50": to_ms(lat["50"]), "p99": to_ms(lat["99"]),
            "errors": float(errors.group(1)) if errors else 0.0,
            "socket_errors": float(sum(map(int, sockets.groups()))) if sockets else 0.0,
            "requests": float(re.search(r"(\d+) requests in", out).group(1))}  # type: ignore[union-attr]


def combined(runs: list[dict[str, float]]) -> dict[str, float]:
    """wrk runs of equal length (alternating slices) as one: mean req/s, median p50 and p99,
    summed counts."""
    return {"rps": statistics.fmean(r["rps"] for r in runs), "p50": statistics.median(r["p50"] for r in runs),
            "p99": statistics.median(r["p99"] for r in runs), "requests": sum(r["requests"] for r in runs),
            "errors": sum(r["errors"] for r in runs), "socket_errors": sum(r["socket_errors"] for r in runs),
            "slices": float(len(runs))}


def to_ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc): steadier than req/s on a busy machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
