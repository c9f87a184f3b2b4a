"""Where the REST gateway's CPU goes under load: py-spy samples of ``python -m http_api`` while wrk
drives one route at concurrency 16 against the fixed-response fake upstream, grouped by package.

Each sample is charged to the package of its innermost frame that belongs to one (the standard
library's frames go to the package that called them), so "fastapi / starlette" is the framework's
own code (routing, request/response objects, middleware), not the handler it calls. Needs py-spy
(``pip install py-spy`` in any environment; ``--py-spy`` if it is not on PATH) and permission to
ptrace the gateway (root in a container).

    flock /tmp/bench.lock .venv/bin/python bench/host_profile.py [--route chat|stream|compat] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import BODY, DEPLOYMENT, Processes, bench_config, lua_script, run_wrk  # noqa: E402

PACKAGES = [  # (label, pattern in a frame's file path), first match wins
    ("fastapi / starlette", r"[(/](fastapi|starlette)/"),
    ("uvicorn / httptools", r"[(/](uvicorn|httptools)/"),
    ("openai SDK / httpx / pydantic", r"[(/](openai|httpx|httpcore|pydantic|pydantic_core)/"),
    ("aiohttp / yarl / multidict", r"[(/](aiohttp|yarl|multidict)/"),
    ("prometheus_client", r"[(/]prometheus_client/"),
    ("opentelemetry", r"[(/]opentelemetry/"),
    ("gateway core/", r"[(/]core/"),
    ("gateway http_api/", r"[(/]http_api/(?!__main__)"),
]
EVENT_LOOP = "event loop (asyncio, uvloop, idle)"


def package(stack: list[str]) -> str:
    """The package of the innermost frame that belongs to one; stdlib frames (urllib, json, re,
    typing...) are charged to the package that called them. None: the event loop itself."""
    for frame in reversed(stack):
        for label, pattern in PACKAGES:
            if re.search(pattern, frame):
                return label
    return EVENT_LOOP


def breakdown(collapsed: str) -> Counter[str]:
    """Samples per package from py-spy's collapsed stacks (``frame;frame;leaf count``)."""
    counts: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            counts[package(stack.split(";"))] += int(count)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--route", choices=["chat", "stream", "compat"], default="chat")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--stacks", type=Path, help="keep py-spy's collapsed stacks here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir, Processes() as procs:
        tmp = Path(tmpdir)
        upstream = procs.fake_upstream()
        port = procs.gateway(bench_config(tmp, upstream, Auth={"Mode": "none"}, Ledger={"Enabled": False}))
        pid = procs.started[-1].pid
        json_type = {"Content-Type": "application/json"}
        url, script = {
            "chat": (f"http://127.0.0.1:{port}/openai/chat?tenant=bench", lua_script(tmp, json_type, json.dumps(BODY))),
            "stream": (f"http://127.0.0.1:{port}/openai/stream?tenant=bench",
                       lua_script(tmp, {**json_type, "Accept": "text/event-stream"}, json.dumps(BODY))),
            "compat": (f"http://127.0.0.1:{port}/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2024-10-21",
                       lua_script(tmp, {"api-key": "caller", "X-Tenant": "bench", **json_type},
                                  json.dumps({"messages": BODY, "max_tokens": 100}))),
        }[args.route]
        run_wrk(url, script, 4, 2)  # warm-up
        out = tmp / "stacks.txt"
        load = threading.Thread(target=run_wrk, args=(url, script, 16, args.seconds + 2))
        load.start()
        subprocess.run([args.py_spy, "record", "--pid", str(pid), "--duration", str(args.seconds), "--rate", "250",
                        "--format", "raw", "--output", str(out), "--nonblocking"], check=True,
                       capture_output=True)
        load.join()
        counts = breakdown(out.read_text())
        if args.stacks:
            shutil.copy(out, args.stacks)
    total = sum(counts.values())
    print(f"\nREST gateway, {args.route} at concurrency 16: {total} samples, self time by package")
    for label, count in counts.most_common():
        print(f"  {label:<40} {count / total:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
