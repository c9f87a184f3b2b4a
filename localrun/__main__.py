"""``python -m localrun``: the gateway on its embedded default, one command.

Starts two simulated Azure OpenAI instances (AlphaOpenAI :8101, BetaOpenAI :8102) unless
``--config`` points at real endpoints, the REST gateway on 127.0.0.1:8000 and the gRPC host on
127.0.0.1:8002 (metrics :9102); optionally Azurite for Table-storage state (``--state table``)
and Debian's Prometheus when it is installed. Ctrl-C stops everything it started, by PID.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .ports import PortNotOpen, wait_port

ROOT = Path(__file__).resolve().parent.parent
# With APPLICATIONINSIGHTS_CONNECTION_STRING set for a local run, the exporter still sends nothing
# of its own to Microsoft: no statsbeat, no OneSettings control-plane polling (live metrics are off
# by default, Telemetry:LiveMetrics).
LOCAL_ONLY = {"APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true", "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true"}
SAMPLE = ROOT / "config" / "appsettings.sample.json"
RUN_DIR = ROOT / ".run"


def _start(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=ROOT, env={**LOCAL_ONLY, **os.environ, **(env or {})})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localrun", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="settings JSON with real endpoints (no simulator)")
    parser.add_argument("--rest-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8002)
    parser.add_argument("--grpc-metrics-port", type=int, default=9102)
    parser.add_argument("--simulator-ports", default="8101,8102", metavar="ALPHA,BETA",
                        help="ports of the simulated AlphaOpenAI and BetaOpenAI (default 8101,8102)")
    parser.add_argument("--no-grpc", action="store_true", help="do not start the gRPC host")
    parser.add_argument("--state", choices=["memory", "table"], default="memory",
                        help="round-robin state: in memory, or Table storage on a local Azurite")
    parser.add_argument("--no-prometheus", action="store_true",
                        help="do not start Debian's Prometheus even when it is installed")
    args = parser.parse_args(argv)

    RUN_DIR.mkdir(exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    env: dict[str, str] = {}
    config = args.config or SAMPLE
    try:
        if args.config is None:
            alpha, beta = _simulator_ports(parser, args.simulator_ports)
            sim = _start([sys.executable, "-m", "simulator", "--per-token-latency-ms", "15",
                          "--log-level", "WARNING",
                          "--instances", f"AlphaOpenAI:{alpha}:sim-key-alpha,BetaOpenAI:{beta}:sim-key-beta"])
            procs.append(sim)
            wait_port(alpha, sim, what="simulator AlphaOpenAI")
            wait_port(beta, sim, what="simulator BetaOpenAI")
            # The sample settings point at 8101/8102; environment variables win over the JSON file.
            env.update({"AzureOpenAI__Services__AlphaOpenAI__Endpoint": f"http://127.0.0.1:{alpha}/",
                        "AzureOpenAI__Services__BetaOpenAI__Endpoint": f"http://127.0.0.1:{beta}/"})
        if args.state == "table":
            env.update(_start_azurite(procs))
        rest = _start([sys.executable, "-m", "http_api", "--config", str(config),
                       "--port", str(args.rest_port)], env)
        procs.append(rest)
        wait_port(args.rest_port, rest, what="REST gateway")
        grpc_line = ""
        if not args.no_grpc and (ROOT / "grpc_host").is_dir():
            grpc = _start([sys.executable, "-m", "grpc_host", "--config", str(config), "--port",
                           str(args.grpc_port), "--metrics-port", str(args.grpc_metrics_port)], env)
            procs.append(grpc)
            wait_port(args.grpc_port, grpc, what="gRPC host")
            grpc_line = (f"  gRPC host      127.0.0.1:{args.grpc_port}  "
                         f"(metrics http://127.0.0.1:{args.grpc_metrics_port}/metrics)\n")
        prom_line = "" if args.no_prometheus else _start_prometheus()
        base = f"http://127.0.0.1:{args.rest_port}"
        print(f"\nGateway running ({'simulated Azure OpenAI' if args.config is None else config}):\n"
              f"  REST           {base}   (Swagger UI {base}/docs, metrics {base}/metrics)\n"
              f"{grpc_line}{prom_line}"
              f"  try:  curl '{base}/openai/echo?tenant=contoso&value=1'\n"
              f"        curl -H 'Content-Type: application/json' -d '[{{\"role\":\"user\",\"content\":"
              f"\"Tell me about Milan\"}}]' '{base}/openai/chat?tenant=contoso'\n"
              f"Ctrl-C stops everything.\n", flush=True)
        signal.signal(signal.SIGTERM, _interrupt)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        failed = next(p for p in procs if p.poll() is not None)
        print(f"a process exited ({' '.join(map(str, failed.args))[:120]}); stopping", file=sys.stderr)
        return 1
    except PortNotOpen as exc:
        print(f"localrun: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        _stop_prometheus(args.no_prometheus)
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _simulator_ports(parser: argparse.ArgumentParser, value: str) -> tuple[int, int]:
    parts = value.split(",")
    if len(parts) != 2 or not all(p.strip().isascii() and p.strip().isdigit() for p in parts):
        parser.error(f"--simulator-ports takes two ports, ALPHA,BETA; got {value!r}")
    return int(parts[0]), int(parts[1])


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _start_azurite(procs: list[subprocess.Popen[bytes]]) -> dict[str, str]:
    script = ROOT / "scripts" / "azurite.sh"
    subprocess.run(["bash", str(script), "install"], check=True, cwd=ROOT)
    data = RUN_DIR / "azurite"
    data.mkdir(exist_ok=True)
    proc = _start(["bash", str(script), "run", "10002", str(data)])
    procs.append(proc)
    wait_port(10002, proc, what="Azurite")
    print("  Azurite Table  http://127.0.0.1:10002 (round-robin state)", flush=True)
    return {"StateStore__Type": "table", "AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def _start_prometheus() -> str:
    script = ROOT / "scripts" / "prometheus.sh"
    if not shutil.which("prometheus") or not script.exists():
        return "  Prometheus     not installed (apt-get install prometheus) - skipped\n"
    result = subprocess.run(["bash", str(script), "start"], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        return f"  Prometheus     failed to start: {result.stderr.strip()[:200]}\n"
    url = result.stdout.strip().removeprefix("Prometheus: ")
    return f"  Prometheus     {url or 'http://127.0.0.1:9090'}\n"


def _stop_prometheus(disabled: bool) -> None:
    script = ROOT / "scripts" / "prometheus.sh"
    if not disabled and shutil.which("prometheus") and script.exists():
        subprocess.run(["bash", str(script), "stop"], cwd=ROOT, capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
