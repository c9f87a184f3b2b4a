"""The ledger across real processes: two REST gateways on one Azurite, simulators as Azure OpenAI.

What a finance team relies on: the book equals what Azure (the simulators) served and what the
Prometheus counters say, to the token; a SIGTERM mid-load loses nothing; a SIGKILL loses at most
what was served in the last ``Ledger:FlushSeconds``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from localrun.ports import free_port, wait_port

ROOT = Path(__file__).resolve().parents[3]
DEPLOYMENT = "gpt-35-turbo-16k"
KEYS = {"AlphaOpenAI": "key-alpha", "BetaOpenAI": "key-beta"}
TENANTS = [f"tenant{i}" for i in range(5)]
QUESTION = [{"role": "user", "content": "Tell me about Milan"}]
FLUSH_SECONDS = 1.0
ERRORS: Counter[str] = Counter()  # client-side failures by type, for the assertion messages


class Stack:
    def __init__(self, tmp: Path, connection_string: str) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.sim_ports = {name: free_port() for name in KEYS}
        spec = ",".join(f"{name}:{self.sim_ports[name]}:{key}" for name, key in KEYS.items())
        self._start("simulator", [sys.executable, "-m", "simulator", "--instances", spec, "--deployment",
                                  DEPLOYMENT, "--latency-ms", "30", "--seed", "3"])
        for port in self.sim_ports.values():
            wait_port(port)
        self.config = tmp / "gateway.json"
        self.config.write_text(json.dumps({
            "AzureOpenAI": {"Services": {
                name: {"Endpoint": f"http://127.0.0.1:{self.sim_ports[name]}", "ApiKey": key,
                       "Deployment": DEPLOYMENT, "Model": DEPLOYMENT, "MaxRetries": 0, "MaxResponseTokens": 100}
                for name, key in KEYS.items()}},
            "StateStore": {"Type": "table", "ConnectionString": connection_string, "LeaseSize": 16},
            "Ledger": {"FlushSeconds": FLUSH_SECONDS, "TableName": f"ledger{os.getpid()}{free_port()}"},
        }))

    def gateway(self, name: str) -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        proc = self._start(name, [sys.executable, "-m", "http_api", "--config", str(self.config), "--port", str(port)])
        wait_port(port, timeout=30)
        return f"http://127.0.0.1:{port}", proc

    def sim_tokens(self) -> int:
        return sum(httpx.get(f"http://127.0.0.1:{p}/_sim/stats", timeout=5).json()["generated"]["total_tokens"]
                   for p in self.sim_ports.values())

    def reset_sims(self) -> None:
        for port in self.sim_ports.values():
            httpx.post(f"http://127.0.0.1:{port}/_sim/reset", timeout=5).raise_for_status()

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


@pytest.fixture
def stack(tmp_path: Path, azurite: Any) -> Iterator[Stack]:
    built = Stack(tmp_path, azurite.connection_string)
    try:
        yield built
    finally:
        built.stop()


class _Trigger:
    """Runs ``then()`` ``after`` seconds past the ``warm``-th answered request, not at a fixed time:
    a cold gateway on a slow machine may take longer than any fixed delay to answer its first.
    Requests not yet sent when it has fired are not sent (``fired``)."""

    def __init__(self, warm: int, after: float, then: Callable[[], None] | None) -> None:
        self.left, self.after, self.then = warm, after, then
        self.fired = False

    def answered(self) -> None:
        self.left -= 1
        if self.left == 0 and self.then is not None:
            asyncio.get_running_loop().call_later(self.after, self._fire)

    def _fire(self) -> None:
        self.fired = True
        if self.then is not None:
            self.then()


async def _one(
    client: httpx.AsyncClient, url: str, tenant: str, kind: int, trigger: _Trigger
) -> tuple[int, int, float]:
    """(status, tokens the caller was told about, time it finished)."""
    try:
        if kind == 0:
            r = await client.post(f"{url}/openai/chat", params={"tenant": tenant}, json=QUESTION)
            tokens = int(r.headers.get("x-total-tokens", 0))
        else:
            headers = {"Accept": "text/event-stream"} if kind == 1 else {}
            r = await client.post(f"{url}/openai/stream", params={"tenant": tenant}, json=QUESTION, headers=headers)
            tokens = 0
            if kind == 1 and r.status_code == 200:
                for block in r.text.split("\n\n"):
                    if block.startswith("event: usage"):
                        tokens = json.loads(block.split("data: ", 1)[1])["total_tokens"]
        if r.status_code == 200:
            trigger.answered()
        return r.status_code, tokens, time.monotonic()
    except httpx.HTTPError as exc:
        ERRORS[type(exc).__name__] += 1
        return 0, 0, time.monotonic()


def _load(
    urls: list[str], count: int, concurrency: int, *,
    warm: int = 0, after: float = 0.0, then: Callable[[], None] | None = None,
) -> list[tuple[int, int, float]]:
    """Send ``count`` requests at once (``concurrency`` connections); ``then()`` runs ``after``
    seconds past the ``warm``-th successful answer."""
    return asyncio.run(_send(urls, count, concurrency, _Trigger(warm, after, then)))


async def _send(urls: list[str], count: int, concurrency: int, trigger: _Trigger) -> list[tuple[int, int, float]]:
    # A fresh connection per request: reusing one the server is closing for keep-alive would fail
    # a request that never reached it, and this test counts every request.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    # No pool timeout: all requests are issued at once and queue for a connection as long as needed.
    # At most ``concurrency`` requests in httpx at once: its pool queue is slow to drain thousands
    # of refused connections once a victim is gone, so those left are not sent at all.
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> tuple[int, int, float]:
        async with gate:
            if trigger.fired:
                return -1, 0, time.monotonic()  # never sent
            return await _one(client, urls[i % len(urls)], TENANTS[i % 5], i % 3, trigger)

    async with httpx.AsyncClient(timeout=httpx.Timeout(60, pool=None), limits=limits) as client:
        return await asyncio.gather(*(one(i) for i in range(count)))


def _around_today() -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=2))}


def _ledger(url: str, **params: str) -> dict[str, dict[str, int]]:
    body = httpx.get(f"{url}/admin/usage", params={**_around_today(), **params},
                     timeout=30).json()
    out: dict[str, dict[str, int]] = {}
    for row in body["rows"]:
        sums = out.setdefault(row["tenant"], {"requests": 0, "prompt": 0, "completion": 0, "total": 0})
        for key, column in (("requests", "requests"), ("prompt", "prompt_tokens"),
                            ("completion", "completion_tokens"), ("total", "total_tokens")):
            sums[key] += row[column]
    return out


def _counters(urls: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for url in urls:
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
            for sample in family.samples:
                kind = {"openai_prompt_tokens_total": "prompt", "openai_completion_tokens_total": "completion",
                        "openai_total_tokens_total": "total"}.get(sample.name)
                if kind:
                    sums = out.setdefault(sample.labels["tenant_name"], {"prompt": 0, "completion": 0, "total": 0})
                    sums[kind] += int(sample.value)
    return out


def _total(book: dict[str, dict[str, int]]) -> int:
    return sum(sums["total"] for sums in book.values())


def _settled(url: str, expected_total: int, timeout: float = 15.0) -> dict[str, dict[str, int]]:
    """The ledger once every process's flush has landed (at most a few flush intervals)."""
    deadline = time.monotonic() + timeout
    while True:
        book = _ledger(url)
        if _total(book) >= expected_total or time.monotonic() > deadline:
            return book
        time.sleep(0.25)


@pytest.mark.slow
def test_the_ledger_equals_the_counters_and_what_azure_served(stack: Stack) -> None:
    one, _ = stack.gateway("gateway1")
    two, _ = stack.gateway("gateway2")
    results = _load([one, two], 1000, concurrency=200)
    statuses = Counter(status for status, _, _ in results)
    assert statuses == {200: 1000}, f"statuses {dict(statuses)} {dict(ERRORS)}; logs in {stack.tmp}"
    served = stack.sim_tokens()
    book = _settled(one, served)
    counters = _counters([one, two])
    assert {t: {k: v for k, v in sums.items() if k != "requests"} for t, sums in book.items()} == counters
    assert {t: sums["requests"] for t, sums in book.items()} == {t: 200 for t in TENANTS}
    assert _total(book) == served
    assert _ledger(one, tenant="tenant3", format="json") == {"tenant3": book["tenant3"]}
    csv = httpx.get(f"{one}/admin/usage", params={**_around_today(), "format": "csv"},
                    timeout=30).text
    assert csv.splitlines()[0].startswith("tenant,period,instance,deployment,requests")
    assert sum(int(line.split(",")[7]) for line in csv.splitlines()[1:]) == served


@pytest.mark.slow
def test_sigterm_mid_load_loses_nothing(stack: Stack) -> None:
    reader, _ = stack.gateway("reader")
    url, victim = stack.gateway("victim")
    results = _load([url], 400, concurrency=32, warm=20, after=0.2,
                    then=lambda: os.killpg(victim.pid, signal.SIGTERM))
    # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM, not a crash.
    assert victim.wait(timeout=30) in (0, -signal.SIGTERM)
    served = stack.sim_tokens()
    assert served > 0 and any(status == 200 for status, _, _ in results)
    # Refused, cut off or never sent (-1): the SIGTERM came while requests were still coming.
    assert any(status != 200 for status, _, _ in results), "the load ended before the SIGTERM: test nothing"
    assert _total(_ledger(reader)) == served  # the final flush wrote everything the simulators served


@pytest.mark.slow
def test_sigkill_loses_at_most_one_flush_interval(stack: Stack) -> None:
    reader, _ = stack.gateway("reader")
    url, victim = stack.gateway("victim")
    killed: list[float] = []

    def kill() -> None:
        killed.append(time.monotonic())
        os.killpg(victim.pid, signal.SIGKILL)

    # Killed 2.5 s past the 20th answer: answers older than a flush interval exist whatever the
    # machine's speed; the rest of the 3000 are not sent once it is gone.
    results = _load([url], 3000, concurrency=8, warm=20, after=2.5, then=kill)
    killed_at = killed[0]
    served = stack.sim_tokens()
    time.sleep(FLUSH_SECONDS)  # nothing more can arrive; the reader's view is final
    booked = _total(_ledger(reader))
    # Every answer the callers had more than one flush interval (plus scheduling slack) before the
    # kill must be in the book; nothing may be booked twice.
    safe = sum(tokens for status, tokens, done in results if status == 200 and done < killed_at - FLUSH_SECONDS - 0.5)
    assert safe > 0
    assert safe <= booked <= served
    print(f"SIGKILL: served {served} tokens, booked {booked}, lost {served - booked} "
          f"({(served - booked) / served:.1%}) with Ledger:FlushSeconds={FLUSH_SECONDS}")


@pytest.mark.slow
def test_a_daily_quota_refuses_once_used_across_both_processes(tmp_path: Path, azurite: Any) -> None:
    """``Limits:Tenants:tenant0:TokensPerDay`` shared by two gateways: the tenant is served until the
    quota is used, then both refuse it with 429 naming the quota; another tenant is not affected."""
    stack = Stack(tmp_path, azurite.connection_string)
    tree = json.loads(stack.config.read_text())
    tree["Limits"] = {"Tenants": {"tenant0": {"TokensPerDay": 1000}}}
    stack.config.write_text(json.dumps(tree))
    try:
        one, _ = stack.gateway("gateway1")
        two, _ = stack.gateway("gateway2")
        served = refused = 0
        tokens = 0
        for turn in range(40):
            url = (one, two)[turn % 2]
            r = httpx.post(f"{url}/openai/chat", params={"tenant": "tenant0"}, json=QUESTION, timeout=30)
            if r.status_code == 200:
                served += 1
                tokens += int(r.headers["x-total-tokens"])
            else:
                assert r.status_code == 429, r.text
                body = r.json()
                assert "TokensPerDay" in body["detail"] and int(r.headers["retry-after"]) > 0
                refused += 1
        assert served >= 3 and refused >= 20
        assert tokens <= 1000  # what both processes admitted together stays within the quota
        for url in (one, two):  # refused on both, and only this tenant
            assert httpx.post(f"{url}/openai/chat", params={"tenant": "tenant0"}, json=QUESTION,
                              timeout=30).status_code == 429
            assert httpx.post(f"{url}/openai/chat", params={"tenant": "tenant1"}, json=QUESTION,
                              timeout=30).status_code == 200
        gauge = [line for line in httpx.get(f"{one}/metrics", timeout=10).text.splitlines()
                 if line.startswith('gateway_quota_used_ratio{') and 'tenant_name="tenant0"' in line]
        assert gauge and float(gauge[0].rsplit(" ", 1)[1]) >= 0.9
    finally:
        stack.stop()
