"""The hot path against the floor of a Python relay: every route side by side, in one run (issue 18).

Starts on 127.0.0.1: the fixed-response fake upstream (bench/fake_upstream.py), the floor relay
(bench/floor.py), a static OIDC issuer, two REST gateways (``python -m http_api``; "off": Auth:Mode
none, no limits, ledger off; "on": Auth:Mode jwt, a tenant limit far above the run, ledger in
memory) and the gRPC host on the "off" settings, all on the fake upstream. Then:

1. wrk at concurrency 16, then 1, in alternating rounds (every route for a slice, then again, three
   times; the figures combine a route's slices): direct (the fake upstream), the floor, ``/openai/chat``, the
   compatible API pass-through, ``/openai/stream`` (SSE, whole streams) against the floor's
   stream; the gRPC host's ``GetChatCompletions`` by a grpc.aio client in its own process (wrk
   speaks no gRPC; that client costs more CPU than wrk, so the gRPC row is pessimistic);
2. time to first token at concurrency 1, interleaved request by request: direct, floor,
   ``/openai/stream`` and the compatible API streaming;
3. ``/openai/chat`` with jwt + limits + ledger on vs off, alternating runs at concurrency 16;
4. the "on" gateway's RSS sampled while it serves 100k requests, ``/openai/chat`` and the
   compatible API in turn (the two relay paths, with jwt + limits + ledger).

Prints one table and writes it as JSON (``--json``). About 4 minutes; ``--quick`` about a minute.

    flock /tmp/bench.lock .venv/bin/python bench/hot_path.py [--quick] [--json hot_path.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import (  # noqa: E402
    BODY,
    DEPLOYMENT,
    KEY,
    Processes,
    bench_config,
    combined,
    free_port,
    lua_script,
    run_wrk,
)
from bench._hot_path_load import grpc_load, rss_mb, time_to_first_token  # noqa: E402

VERSION = "2024-10-21"
AUDIENCE = "api://bench-gateway"
AZURE_BODY = {"messages": BODY, "max_tokens": 100}


@dataclass(frozen=True)
class Plan:
    c16_seconds: int
    c1_seconds: int
    rounds: int
    streams: int
    rss_requests: int

    @classmethod
    def of(cls, quick: bool) -> Plan:
        return cls(1, 1, 1, 10, 3_000) if quick else cls(2, 1, 3, 100, 100_000)


@dataclass(frozen=True)
class Route:
    name: str
    url: str
    script: Path
    baseline: str  # the row its ratio and added latency are taken against


def start(procs: Processes, tmp: Path) -> tuple[dict[str, int], dict[str, str], int]:
    """Every process; (ports, JWT headers for the "on" gateway, its PID)."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    from bench.auth_overhead import write_issuer

    upstream = procs.fake_upstream()
    ports = {"upstream": upstream, "floor": procs.floor(upstream), "issuer": free_port()}
    issuer = f"http://127.0.0.1:{ports['issuer']}"
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_issuer(tmp / "issuer", issuer, private)
    procs.start([sys.executable, "-m", "http.server", str(ports["issuer"]), "--bind", "127.0.0.1",
                 "--directory", str(tmp / "issuer")], ports["issuer"], quiet=True)
    off = bench_config(tmp, upstream, "off.json", Auth={"Mode": "none"}, Ledger={"Enabled": False})
    on = bench_config(tmp, upstream, "on.json", Auth={"Mode": "jwt", "Jwt": {"Issuer": issuer, "Audience": AUDIENCE}},
                      Limits={"Tenants": {"bench": {"TokensPerMinute": 10**9, "RequestsPerMinute": 10**8}}},
                      Ledger={"Enabled": True, "FlushSeconds": 1})
    ports["off"] = procs.gateway(off)
    ports["on"] = procs.gateway(on)
    on_pid = procs.started[-1].pid
    ports["grpc"] = procs.grpc_gateway(off)
    now = int(time.time())
    token = jwt.encode({"iss": issuer, "aud": AUDIENCE, "tenant": "bench", "exp": now + 3600, "nbf": now},
                       private, algorithm="RS256", headers={"kid": "bench-1"})
    return ports, {"Authorization": f"Bearer {token}"}, on_pid


def routes(tmp: Path, ports: dict[str, int], bearer: dict[str, str]) -> list[Route]:
    json_type = {"Content-Type": "application/json"}
    sse = {**json_type, "Accept": "text/event-stream"}
    chat, azure = json.dumps(BODY), json.dumps(AZURE_BODY)
    compat_path = f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={VERSION}"

    def at(port: str, path: str) -> str:
        return f"http://127.0.0.1:{ports[port]}{path}"

    return [
        Route("direct", at("upstream", compat_path), lua_script(tmp, {"api-key": KEY, **json_type}, azure), "direct"),
        Route("floor", at("floor", "/chat"), lua_script(tmp, json_type, chat), "floor"),
        Route("/openai/chat", at("off", "/openai/chat?tenant=bench"), lua_script(tmp, json_type, chat), "floor"),
        Route("compatible API", at("off", compat_path),
              lua_script(tmp, {"api-key": "caller", "X-Tenant": "bench", **json_type}, azure), "floor"),
        Route("/openai/chat jwt+limits+ledger", at("on", "/openai/chat"),
              lua_script(tmp, {**bearer, **json_type}, chat), "floor"),
        Route("floor stream", at("floor", "/stream"), lua_script(tmp, json_type, chat), "floor stream"),
        Route("/openai/stream (SSE)", at("off", "/openai/stream?tenant=bench"), lua_script(tmp, sse, chat),
              "floor stream"),
    ]


def load(plan: Plan, table: list[Route], grpc_port: int) -> dict[str, dict[str, dict[str, float]]]:
    """Every route at concurrency 16, then 1, in ``plan.rounds`` alternating rounds of slices (route
    after route, then again), so that load from elsewhere on a shared machine falls on every route
    alike; gRPC last in each round. A route's figures combine its slices (see :func:`combined`)."""
    slices: dict[str, dict[str, list[dict[str, float]]]] = {r.name: {"c16": [], "c1": []} for r in table}
    slices["gRPC GetChatCompletions"] = {"c16": [], "c1": []}
    for route in table:
        run_wrk(route.url, route.script, 4, 1)  # warm-up
    grpc_load(grpc_port, 4, 1)
    for connections, seconds, key in ((16, plan.c16_seconds, "c16"), (1, plan.c1_seconds, "c1")):
        for _ in range(plan.rounds):
            for route in table:
                slices[route.name][key].append(run_wrk(route.url, route.script, connections, seconds))
            slices["gRPC GetChatCompletions"][key].append(grpc_load(grpc_port, connections, seconds))
    return {name: {key: combined(runs) for key, runs in levels.items()} for name, levels in slices.items()}


def features(plan: Plan, table: list[Route]) -> dict[str, Any]:
    """``/openai/chat`` with jwt + limits + ledger on vs off, alternating at concurrency 16."""
    off, on = (next(r for r in table if r.name == n) for n in ("/openai/chat", "/openai/chat jwt+limits+ledger"))
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for _ in range(plan.rounds):
        runs["off"].append(run_wrk(off.url, off.script, 16, plan.c16_seconds))
        runs["on"].append(run_wrk(on.url, on.script, 16, plan.c16_seconds))
    both = {k: combined(v) for k, v in runs.items()}
    rps = {k: c["rps"] for k, c in both.items()}
    errors = sum(c["errors"] + c["socket_errors"] for c in both.values())
    return {"off_rps": rps["off"], "on_rps": rps["on"], "ratio": rps["on"] / rps["off"], "errors": errors,
            "rounds": plan.rounds}


def rotation(tmp: Path, port: int, bearer: dict[str, str]) -> tuple[str, Path]:
    """A wrk script sending ``/openai/chat`` and the compatible API's chat in turn; (url, script)."""
    headers = {**bearer, "Content-Type": "application/json"}
    compat_path = f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={VERSION}"
    requests = [("/openai/chat", json.dumps(BODY)), (compat_path, json.dumps(AZURE_BODY))]
    table = "{" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()) + "}"
    lines = ["local requests = {}", "init = function(args)"]  # after wrk's own init: the Host header is set
    lines += [f'  requests[{i + 1}] = wrk.format("POST", {json.dumps(path)}, {table}, {json.dumps(body)})'
              for i, (path, body) in enumerate(requests)]
    lines += ["end", "local turn = 0", "request = function()", f"  turn = turn % {len(requests)} + 1",
              "  return requests[turn]", "end"]
    script = tmp / "rotation.lua"
    script.write_text("\n".join(lines) + "\n")
    return f"http://127.0.0.1:{port}/", script


def rss(plan: Plan, target: tuple[str, Path], pid: int) -> dict[str, Any]:
    """RSS of the gateway sampled between wrk runs until it has served ``plan.rss_requests``."""
    chunk = max(1, plan.c16_seconds)
    served, errors, samples = 0, 0.0, []
    while served < plan.rss_requests:
        result = run_wrk(*target, 16, chunk)
        served += int(result["requests"])
        errors += result["errors"] + result["socket_errors"]
        samples.append((served, rss_mb(pid)))
    values = [mb for _, mb in samples]
    return {"requests": served, "errors": errors, "first_mb": values[0], "last_mb": values[-1],
            "max_mb": max(values), "drift": values[-1] / values[0] - 1, "samples": samples}


def ttft(plan: Plan, ports: dict[str, int]) -> dict[str, dict[str, float]]:
    json_type = {"Content-Type": "application/json"}
    stream_body = json.dumps({**AZURE_BODY, "stream": True, "stream_options": {"include_usage": True}}).encode()
    chat = json.dumps(BODY).encode()
    compat_path = f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={VERSION}"
    targets = {
        "direct": (f"http://127.0.0.1:{ports['upstream']}{compat_path}", stream_body, {"api-key": KEY, **json_type}),
        "floor": (f"http://127.0.0.1:{ports['floor']}/stream", chat, json_type),
        "/openai/stream (SSE)": (f"http://127.0.0.1:{ports['off']}/openai/stream?tenant=bench", chat,
                                 {"Accept": "text/event-stream", **json_type}),
        "compatible API": (f"http://127.0.0.1:{ports['off']}{compat_path}", stream_body,
                           {"api-key": "caller", "X-Tenant": "bench", **json_type}),
    }
    samples, failures = asyncio.run(time_to_first_token(targets, plan.streams))
    floor = statistics.median(samples["floor"])
    return {name: {"p50_ms": statistics.median(v), "added_vs_floor_ms": statistics.median(v) - floor,
                   "streams": len(v), "errors": failures[name]} for name, v in samples.items()}


def report(results: dict[str, dict[str, Any]], bases: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for name, levels in results.items():
        base = results[bases.get(name, "floor")]
        c16, c1 = levels["c16"], levels["c1"]
        rows.append({"route": name, "baseline": bases.get(name, "floor"), "rps_c16": c16["rps"],
                     "ratio_to_baseline": c16["rps"] / base["c16"]["rps"], "p50_c16_ms": c16["p50"],
                     "p50_c1_ms": c1["p50"], "added_p50_c1_ms": c1["p50"] - base["c1"]["p50"],
                     "requests": c16["requests"] + c1["requests"],
                     "errors": c16["errors"] + c16["socket_errors"] + c1["errors"] + c1["socket_errors"]})
    return rows


def print_report(data: dict[str, Any]) -> None:
    print(f"\n{'route':<32} {'req/s c16':>9} {'x base':>7} {'base':<13} {'p50 c1 ms':>9} {'+p50 c1':>8} errors")
    for r in data["rows"]:
        print(f"{r['route']:<32} {r['rps_c16']:>9,.0f} {r['ratio_to_baseline']:>6.2f}x {r['baseline']:<13} "
              f"{r['p50_c1_ms']:>9.2f} {r['added_p50_c1_ms']:>+8.2f} {int(r['errors'])}")
    print("\ntime to first token, concurrency 1 (ms)")
    for name, t in data["ttft"].items():
        print(f"  {name:<22} p50 {t['p50_ms']:6.2f}  added vs floor {t['added_vs_floor_ms']:+6.2f}  "
              f"({t['streams']} streams, {t['errors']} failed)")
    f = data["features"]
    print(f"\n/openai/chat jwt+limits+ledger on vs off, c16, {f['rounds']} alternating rounds: "
          f"{f['on_rps']:,.0f} vs {f['off_rps']:,.0f} req/s = {f['ratio']:.2f}x")
    m = data["rss"]
    print(f"gateway RSS over {m['requests']:,} requests: first {m['first_mb']:.1f} MB, last {m['last_mb']:.1f}, "
          f"max {m['max_mb']:.1f} (drift {m['drift']:+.1%}), {int(m['errors'])} errors")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a fast pass: 1 s runs, 3k requests for RSS")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--grpc-load", help=argparse.SUPPRESS)  # port,connections,seconds: the gRPC client
    args = parser.parse_args()
    if args.grpc_load:
        from bench._hot_path_load import grpc_client_main

        return grpc_client_main(args.grpc_load)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    plan = Plan.of(args.quick)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmpdir, Processes() as procs:
        tmp = Path(tmpdir)
        ports, bearer, on_pid = start(procs, tmp)
        table = routes(tmp, ports, bearer)
        results = load(plan, table, ports["grpc"])
        first = ttft(plan, ports)
        feature = features(plan, table)
        memory = rss(plan, rotation(tmp, ports["on"], bearer), on_pid)
    data = {"quick": args.quick, "seconds": round(time.monotonic() - started),
            "load_average": Path("/proc/loadavg").read_text().split()[:3],
            "rows": report(results, {r.name: r.baseline for r in table}), "ttft": first, "features": feature,
            "rss": memory}
    print_report(data)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    failed = any(r["errors"] for r in data["rows"]) or feature["errors"] or memory["errors"] or any(
        t["errors"] for t in first.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
