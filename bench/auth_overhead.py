"""Cost of authentication on the hot path: chat throughput with ``Auth:Mode`` jwt / keys vs none, one run.

Starts, as separate processes on 127.0.0.1: the simulator (zero-latency, so the gateway is the
bottleneck), a static OIDC issuer (discovery + JWKS files served by ``http.server``, RSA key made
now) and three REST gateways (``python -m http_api``) that differ only in ``Auth``. Then:

1. wrk at concurrency 16 against each gateway in turn, interleaved over ``--rounds`` rounds;
2. paired: wrk at concurrency 16 against the ``none`` and the ``jwt`` (then ``keys``) gateway *at the
   same time*, so that whatever else loads the machine slows both alike; the ratio of the two
   throughputs in the same seconds is the robust figure on a shared machine;
3. the gateway process's own CPU time per request during the sequential runs (``/proc/<pid>/stat``):
   far less sensitive to other load than req/s, and what bounds throughput on a busy host;
4. in-process: the CPU cost of ``Gateway.authenticate`` per call in each mode.

Each wrk run reuses one token / key (clients keep an Entra token for its lifetime, ~1 h): the JWT
path is one SHA-256 of the token and a dict lookup once the token is cached. The cost of a first
(uncached) RS256 verification is measured separately, in-process, and printed too.

    .venv/bin/python bench/auth_overhead.py [--duration 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import BODY, DEPLOYMENT, KEY, bench_config, cpu_seconds, free_port, lua_script, run_wrk, wait_port  # noqa: E402

AUDIENCE = "api://bench-gateway"
CONNECTIONS = 16


def write_issuer(root: Path, url: str, private: rsa.RSAPrivateKey) -> None:
    jwk = {**RSAAlgorithm.to_jwk(private.public_key(), as_dict=True), "kid": "bench-1", "use": "sig"}
    (root / ".well-known").mkdir(parents=True)
    (root / ".well-known" / "openid-configuration").write_text(json.dumps({"issuer": url, "jwks_uri": f"{url}/keys"}))
    (root / "keys").write_text(json.dumps({"keys": [jwk]}))


def uncached_verify_us(private: rsa.RSAPrivateKey, issuer: str) -> float:
    """Microseconds for one full RS256 verification through core.access (fresh token each time)."""
    from core.access import JwksKeys, JwtVerifier

    class StaticJwks:
        async def get_json(self, url: str) -> object:
            jwk = {**RSAAlgorithm.to_jwk(private.public_key(), as_dict=True), "kid": "bench-1"}
            return {"keys": [jwk]}

        async def aclose(self) -> None:
            return None

    verifier = JwtVerifier(issuer=issuer, audience=AUDIENCE, tenant_claim="tenant", leeway_seconds=60,
                           keys=JwksKeys(issuer, StaticJwks(), jwks_uri=f"{issuer}/keys"))
    now = int(time.time())
    tokens = [jwt.encode({"iss": issuer, "aud": AUDIENCE, "tenant": "bench", "exp": now + 600, "jti": str(i)},
                         private, algorithm="RS256", headers={"kid": "bench-1"}) for i in range(2000)]

    async def run() -> float:
        await verifier.tenant(tokens[0])
        started = time.perf_counter()
        for token in tokens[1:]:
            await verifier.tenant(token)
        return (time.perf_counter() - started) / (len(tokens) - 1) * 1e6

    return asyncio.run(run())


def authenticate_us(modes: dict[str, dict[str, object]], headers: dict[str, dict[str, str]]) -> dict[str, float]:
    """Microseconds per ``Gateway.authenticate`` call, tokens cached (the steady state)."""
    from core import Credentials, build_gateway
    from core.config import validate_settings

    results = {}
    for mode, auth in modes.items():
        gateway = build_gateway(validate_settings({"auth": auth}))
        credentials = Credentials(tenant_query="bench" if mode == "none" else None,
                                  authorization=headers[mode].get("Authorization"),
                                  api_key=headers[mode].get("api-key"))

        async def run(gw: object = gateway, creds: Credentials = credentials) -> float:
            await gw.authenticate(creds)  # type: ignore[attr-defined]
            started = time.perf_counter()
            for _ in range(20_000):
                await gw.authenticate(creds)  # type: ignore[attr-defined]
            took = (time.perf_counter() - started) / 20_000 * 1e6
            await gw.aclose()  # type: ignore[attr-defined]
            return took

        results[mode] = asyncio.run(run())
    return results



def paired(a: tuple[str, Path], b: tuple[str, Path], duration: int) -> tuple[dict[str, float], dict[str, float]]:
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(run_wrk, *a, CONNECTIONS, duration)
        second = pool.submit(run_wrk, *b, CONNECTIONS, duration)
        return first.result(), second.result()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per mode (default 2)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    api_key = "gwk_" + secrets.token_urlsafe(32)
    sim_port, issuer_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{issuer_port}"
    modes = {
        "none": {"Mode": "none"},
        "jwt": {"Mode": "jwt", "Jwt": {"Issuer": issuer, "Audience": AUDIENCE}},
        "keys": {"Mode": "keys", "Keys": {"bench": "sha256:" + hashlib.sha256(api_key.encode()).hexdigest()}},
    }
    now = int(time.time())
    token = jwt.encode({"iss": issuer, "aud": AUDIENCE, "tenant": "bench", "exp": now + 3600, "nbf": now},
                       private, algorithm="RS256", headers={"kid": "bench-1"})
    headers = {"none": {}, "jwt": {"Authorization": f"Bearer {token}"}, "keys": {"api-key": api_key}}
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        write_issuer(tmp / "issuer", issuer, private)
        try:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "simulator", "--port", str(sim_port), "--api-key", KEY, "--zero-latency",
                 "--log-level", "WARNING", "--deployment", DEPLOYMENT], cwd=ROOT))
            wait_port(sim_port, procs[-1])
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "http.server", str(issuer_port), "--bind", "127.0.0.1",
                 "--directory", str(tmp / "issuer")], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(issuer_port, procs[-1])
            urls = {}
            pids: dict[str, int] = {}
            for mode, auth in modes.items():
                port = free_port()
                config = bench_config(tmp, sim_port, f"{mode}.json", Auth=auth)
                procs.append(subprocess.Popen([sys.executable, "-m", "http_api", "--config", str(config),
                                               "--port", str(port)], cwd=ROOT, stderr=subprocess.DEVNULL))
                wait_port(port, procs[-1])
                pids[mode] = procs[-1].pid
                script = lua_script(tmp, {"Content-Type": "application/json", **headers[mode]}, json.dumps(BODY))
                query = "?tenant=bench" if mode == "none" else ""
                urls[mode] = (f"http://127.0.0.1:{port}/openai/chat{query}", script)
                warm = run_wrk(*urls[mode], 4, 2)
                if warm["errors"]:
                    raise SystemExit(f"{mode}: the gateway answered non-2xx during warm-up")
            for _ in range(args.rounds):
                for mode in modes:
                    before = cpu_seconds(pids[mode])
                    run = run_wrk(*urls[mode], CONNECTIONS, args.duration)
                    run["cpu_ms"] = (cpu_seconds(pids[mode]) - before) * 1000 / max(1.0, run["rps"] * args.duration)
                    results[mode].append(run)
            pairs: dict[str, list[float]] = {"jwt": [], "keys": []}
            for _ in range(args.rounds):
                for mode in pairs:
                    base_run, mode_run = paired(urls["none"], urls[mode], args.duration)
                    pairs[mode].append(mode_run["rps"] / base_run["rps"])
            costs = authenticate_us(modes, headers)  # the jwt gateway fetches the JWKS: issuer still up
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=15)
    base = statistics.mean(r["rps"] for r in results["none"])
    print(f"\nchat, concurrency {CONNECTIONS}, {args.rounds} interleaved rounds of {args.duration}s each")
    print(f"{'mode':>5} | {'req/s (rounds)':>24} | {'mean':>6} | {'p50 ms':>6} | {'p99 ms':>6} "
          "| ratio vs none | errors")
    for mode, runs in results.items():
        rps = statistics.mean(r["rps"] for r in runs)
        each = " / ".join(f"{r['rps']:.0f}" for r in runs)
        print(f"{mode:>5} | {each:>24} | {rps:>6.0f} | {statistics.mean(r['p50'] for r in runs):>6.2f} | "
              f"{statistics.mean(r['p99'] for r in runs):>6.2f} | {rps / base:>12.2f}x | "
              f"{int(sum(r['errors'] for r in runs))}")
    cpu = {mode: statistics.median(r["cpu_ms"] for r in runs) for mode, runs in results.items()}
    print("\ngateway CPU per request (median of rounds), and the throughput ratio it implies when CPU-bound:")
    for mode, ms in cpu.items():
        print(f"{mode:>5}: {ms:.3f} ms  -> {cpu['none'] / ms:.2f}x")
    print(f"\npaired (none and the mode loaded at the same time, {CONNECTIONS} connections each), "
          "throughput ratio per round:")
    for mode, ratios in pairs.items():
        each = " / ".join(f"{r:.2f}" for r in ratios)
        print(f"{mode:>5} vs none: {each}  -> median {statistics.median(ratios):.2f}x")
    print("\nGateway.authenticate per call (cached token): "
          + ", ".join(f"{mode} {us:.1f} us" for mode, us in costs.items()))
    print(f"first (uncached) RS256 verification: {uncached_verify_us(private, issuer):.0f} us per token")
    return 0


if __name__ == "__main__":
    sys.exit(main())
