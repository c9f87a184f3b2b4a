"""Cost of the REST server's client guards (``RestHost:*`` limits), on vs off, in one run.

"on" is ``python -m http_api`` (httptools protocol with header size/deadline checks + the body
deadline/drain middleware); "off" is the same app on plain ``uvicorn.run`` with uvicorn's own
httptools protocol. Both serve the same settings against one zero-latency simulator; wrk drives
``GET /openai/echo`` (no upstream: the guards' share is largest there) and ``POST /openai/chat``,
alternating off/on three times per route (medians reported), and the server process's CPU
time per request, which a busy shared machine disturbs less than requests/s so drift on a shared machine hits both.

    .venv/bin/python bench/rest_guard_cost.py [--duration 8] [--connections 16]
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

from bench._harness import BODY, Processes, bench_config, cpu_seconds, free_port, lua_script, run_wrk  # noqa: E402

PLAIN = ("import sys, uvicorn; from core import load_settings; from http_api import create_app; "
         "uvicorn.run(create_app(load_settings(json_path=sys.argv[1])), host='127.0.0.1', port=int(sys.argv[2]), "
         "log_level='warning', access_log=False, http='httptools', loop='auto')")



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run (default 8)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    results: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}  # server CPU microseconds per request
    with tempfile.TemporaryDirectory() as tmpdir, Processes() as procs:
        tmp = Path(tmpdir)
        config = bench_config(tmp, procs.simulator())
        on_port = procs.gateway(config)
        on_pid, off_port = procs.started[-1].pid, free_port()
        off_pid = procs.start([sys.executable, "-c", PLAIN, str(config), str(off_port)], off_port).pid
        echo = lua_script(tmp, {}, "")
        chat = lua_script(tmp, {"Content-Type": "application/json"}, json.dumps(BODY))
        routes = {"echo": ("/openai/echo?tenant=bench&value=1", echo.with_name("get.lua")),
                  "chat": ("/openai/chat?tenant=bench", chat)}
        routes["echo"][1].write_text('wrk.method = "GET"\n')
        for route, (path, script) in routes.items():
            for port in (off_port, on_port):  # warm-up
                run_wrk(f"http://127.0.0.1:{port}{path}", script, 4, 2)
            for _ in range(3):
                for mode, port, pid in (("off", off_port, off_pid), ("on", on_port, on_pid)):
                    before = cpu_seconds(pid)
                    rps = run_wrk(f"http://127.0.0.1:{port}{path}", script, args.connections, args.duration)["rps"]
                    used = cpu_seconds(pid) - before
                    results.setdefault((route, mode), []).append(rps)
                    cpu.setdefault((route, mode), []).append(used * 1e6 / (rps * args.duration))
    print(f"\n{'route':6} | {'guards off rps':>22} | {'guards on rps':>22} | on/off | server CPU us/request off -> on")
    for route in ("echo", "chat"):
        off, on = results[(route, "off")], results[(route, "on")]
        cpu_off, cpu_on = statistics.median(cpu[(route, "off")]), statistics.median(cpu[(route, "on")])
        print(f"{route:6} | {' / '.join(f'{v:.0f}' for v in off):>22} | {' / '.join(f'{v:.0f}' for v in on):>22} | "
              f"{statistics.median(on) / statistics.median(off):6.2f} | {cpu_off:.0f} -> {cpu_on:.0f} "
              f"({cpu_on / cpu_off:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
