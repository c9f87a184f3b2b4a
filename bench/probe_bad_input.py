"""Probe both hosts with bad input and bad clients; print a table; exit 1 unless all hold.

Starts, as processes on free 127.0.0.1 ports, the simulator (two instances), the REST host
(``python -m http_api``, short ``RestHost`` header/body deadlines so slow clients finish quickly)
and the gRPC host, then sends every case of bench/probe_cases.py over raw sockets (REST) and
the gRPC cases below, concurrently. It holds when there are

    0 x 5xx (REST) and 0 x INTERNAL/UNKNOWN/DATA_LOSS/UNAVAILABLE (gRPC) for bad input,
    0 tracebacks and 0 ERROR lines in either host's log,
    0 unanswered connections (a client that waits always gets an answer),
    every hang-up during a request body counted in gateway_requests_total (status 499).

    .venv/bin/python bench/probe_bad_input.py
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probe_cases import HANGUP, RestCase, rest_cases  # noqa: E402

from localrun.ports import free_port, wait_port  # noqa: E402
from protos import openai_pb2, openai_pb2_grpc  # noqa: E402

SERVICE = openai_pb2.DESCRIPTOR.services_by_name["OpenAIServiceGrpc"].full_name
SERVER_SIDE = {"INTERNAL", "UNKNOWN", "DATA_LOSS", "UNAVAILABLE"}
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
LIFECYCLE = re.compile(r"listening on|Started server process|Waiting for application|Application (startup|shutdown) "
                       r"complete|Shutting down|Finished server process|shutting down|host stopped")
READ_TIMEOUT = 20.0  # longer than the probe's header/body deadlines (2 s / 3 s)


@contextmanager
def stack(workdir: Path) -> Iterator[tuple[int, int, int, Path, Path]]:
    """Simulator, REST host and gRPC host; yields (rest port, grpc port, grpc metrics port, logs)."""
    alpha, beta, rest, grpc_port, grpc_metrics = (free_port() for _ in range(5))
    env = {**os.environ, "AzureOpenAI__Services__AlphaOpenAI__Endpoint": f"http://127.0.0.1:{alpha}/",
           "AzureOpenAI__Services__BetaOpenAI__Endpoint": f"http://127.0.0.1:{beta}/",
           "RestHost__HeaderTimeoutSeconds": "2", "RestHost__BodyTimeoutSeconds": "3"}
    config = str(ROOT / "config" / "appsettings.sample.json")
    commands = {
        "simulator": [sys.executable, "-m", "simulator", "--zero-latency", "--no-content-filter", "--log-level",
                      "WARNING", "--instances", f"AlphaOpenAI:{alpha}:sim-key-alpha,BetaOpenAI:{beta}:sim-key-beta"],
        "rest": [sys.executable, "-m", "http_api", "--config", config, "--port", str(rest), "--log-level", "info"],
        "grpc": [sys.executable, "-m", "grpc_host", "--config", config, "--port", str(grpc_port),
                 "--metrics-port", str(grpc_metrics)],
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, command in commands.items():
            with (workdir / f"{name}.log").open("wb") as log:
                procs.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        wait_port(alpha, procs[0], what="simulator")
        wait_port(beta, procs[0], what="simulator")
        wait_port(rest, procs[1], what="REST host", timeout=60)
        wait_port(grpc_port, procs[2], what="gRPC host", timeout=60)
        yield rest, grpc_port, grpc_metrics, workdir / "rest.log", workdir / "grpc.log"
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def send_rest(port: int, case: RestCase) -> str:
    """The answer's status code, 'hung up' for hang-up cases, or 'no answer'."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        try:
            writer.write(case.payload)
            await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            pass
        if case.mode == HANGUP:
            await asyncio.sleep(0.2)
            return "hung up"
        data = b""
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                while not STATUS_LINE.match(data) or not reader.at_eof():
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        match = STATUS_LINE.match(data)
        return match.group(1).decode() if match else "no answer"
    finally:
        writer.close()


async def metric_sum(port: int, name: str, status: str) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
    text = (await reader.read(-1)).decode()
    writer.close()
    pattern = re.compile(rf'^{name}\{{([^}}]*status="{status}"[^}}]*)\}} ([0-9.e+]+)$', re.M)
    found = pattern.findall(text)
    print(f"{name}{{status={status}}}: " + ", ".join(f"{labels} {value}" for labels, value in found))
    return sum(float(value) for _, value in found)


def grpc_cases() -> dict[str, tuple[str, Callable[[grpc.aio.Channel], Awaitable[object]]]]:
    """name -> (category, call)."""
    stub_of = openai_pb2_grpc.OpenAIServiceGrpcStub
    msg = openai_pb2.GrpcMessage
    cases: dict[str, tuple[str, Callable[[grpc.aio.Channel], Awaitable[object]]]] = {}
    garbage = {"truncated varint": b"\xff", "length past end": b"\x0a\x40abc", "bad UTF-8": b"\x0a\x02\xff\xfe",
               "reserved wire type": b"\x0f\x00"}
    for method in ("Echo", "GetChatCompletions", "GetChatCompletionsStreaming"):
        for name, payload in garbage.items():
            async def raw(ch: grpc.aio.Channel, m: str = method, p: bytes = payload) -> object:
                if m.endswith("Streaming"):
                    return [x async for x in ch.unary_stream(f"/{SERVICE}/{m}")(p, timeout=10)]
                return await ch.unary_unary(f"/{SERVICE}/{m}")(p, timeout=10)
            cases[f"{method}: {name}"] = ("undecodable", raw)
    for tenant in ("", "   ", "a b", "a" * 65, "ｃｏｎｔｏｓｏ", "\u212aelvin", "..", "a/b", "t\x00"):
        async def echo(ch: grpc.aio.Channel, t: str = tenant) -> object:
            return await stub_of(ch).Echo(openai_pb2.EchoRequest(tenant=t, value=1), timeout=10)
        cases[f"Echo tenant {tenant[:12]!r}"] = ("tenant", echo)
    for name, meta in {"x-tenant with space": ("x-tenant", "a b"), "Basic auth": ("authorization", "Basic eDp5"),
                       "Bearer not a JWT": ("authorization", "Bearer abc")}.items():
        async def echo_meta(ch: grpc.aio.Channel, md: tuple[str, str] = meta) -> object:
            return await stub_of(ch).Echo(openai_pb2.EchoRequest(value=1), metadata=(md,), timeout=10)
        cases[f"Echo {name}"] = ("auth", echo_meta)
    conversations = {
        "empty conversation": [], "unknown role": [msg(role="wizard", content="x")],
        "empty content": [msg(role="user", content="  ")], "no user message": [msg(role="system", content="x")],
        "300 messages": [msg(role="user", content="x")] * 300, "empty role": [msg(role="", content="x")],
        "content of 200001 chars": [msg(role="user", content="x" * 200_001)],
        "2 MB message": [msg(role="user", content="x" * 2_000_000)],
    }
    for name, conversation in conversations.items():
        request = openai_pb2.GetChatCompletionsRequest(tenant="contoso", conversation=conversation)
        async def chat(ch: grpc.aio.Channel, r: openai_pb2.GetChatCompletionsRequest = request) -> object:
            return await stub_of(ch).GetChatCompletions(r, timeout=10)
        async def stream(ch: grpc.aio.Channel, r: openai_pb2.GetChatCompletionsRequest = request) -> object:
            return [x async for x in stub_of(ch).GetChatCompletionsStreaming(r, timeout=10)]
        cases[f"chat: {name}"] = ("conversation", chat)
        if name in ("empty conversation", "unknown role", "no user message"):
            cases[f"stream: {name}"] = ("conversation", stream)
    async def reflect(ch: grpc.aio.Channel) -> object:
        call = ch.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")(timeout=10)
        await call.write(b"\xff")
        await call.done_writing()
        return [m async for m in call]
    cases["health Check: truncated varint"] = (
        "undecodable", lambda ch: ch.unary_unary("/grpc.health.v1.Health/Check")(b"\xff", timeout=10))
    cases["reflection: truncated varint"] = ("undecodable", reflect)
    cases["unknown method"] = ("routing", lambda ch: ch.unary_unary(f"/{SERVICE}/Nope")(b"", timeout=10))
    cases["unknown service"] = ("routing", lambda ch: ch.unary_unary("/No.Such/Call")(b"", timeout=10))
    return cases


async def send_grpc(channel: grpc.aio.Channel, call: Callable[[grpc.aio.Channel], Awaitable[object]]) -> str:
    try:
        await call(channel)
    except grpc.aio.AioRpcError as error:
        return error.code().name
    return "OK"


async def client_gone_grpc(channel: grpc.aio.Channel) -> str:
    """A caller that cancels a stream after the first message."""
    request = openai_pb2.GetChatCompletionsRequest(
        tenant="contoso", conversation=[openai_pb2.GrpcMessage(role="user", content="Tell me a long story")])
    call = openai_pb2_grpc.OpenAIServiceGrpcStub(channel).GetChatCompletionsStreaming(request, timeout=10)
    async for _ in call:
        call.cancel()
        break
    return "CANCELLED (by the client)"


async def probe(rest: int, grpc_port: int) -> tuple[list[tuple[str, str, str, str]], float]:
    cases = rest_cases()
    limit = asyncio.Semaphore(8)
    before = await metric_sum(rest, "gateway_requests_total", "499")

    async def one(case: RestCase) -> tuple[str, str, str, str]:
        async with limit:
            return ("REST", case.category, case.name, await send_rest(rest, case))

    rows = list(await asyncio.gather(*(one(c) for c in cases)))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        for name, (category, call) in grpc_cases().items():
            rows.append(("gRPC", category, name, await send_grpc(channel, call)))
        rows.append(("gRPC", "hang-up", "cancel mid-stream", await client_gone_grpc(channel)))
    await asyncio.sleep(1.0)  # let the server notice the last hang-ups
    counted = await metric_sum(rest, "gateway_requests_total", "499") - before
    return rows, counted


def bad(target: str, outcome: str) -> bool:
    return outcome.startswith("5") if target == "REST" else outcome in SERVER_SIDE


def report(rows: list[tuple[str, str, str, str]], logs: dict[str, str], hangups_counted: float) -> bool:
    table: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for target, category, _, outcome in rows:
        kind = ("5xx" if bad(target, outcome) else "no answer" if outcome == "no answer" else
                "hung up" if outcome == "hung up" else f"{outcome[0]}xx" if target == "REST" else outcome)
        table[(target, category)][kind] += 1
    print(f"{'target':6} {'category':14} {'cases':>5}  outcomes")
    for (target, category), outcomes in table.items():
        summary = ", ".join(f"{k} x{v}" for k, v in sorted(outcomes.items()))
        print(f"{target:6} {category:14} {sum(outcomes.values()):5}  {summary}")
    failures = [r for r in rows if bad(r[0], r[3]) or r[3] == "no answer"]
    for target, category, name, outcome in failures:
        print(f"  FAILED {target} {category} / {name}: {outcome}")
    tracebacks = {name: text.count("Traceback") for name, text in logs.items()}
    errors = {name: len(re.findall(r" ERROR ", text)) for name, text in logs.items()}
    hangups = sum(1 for r in rows if r[1] == "hang-up" and r[0] == "REST")
    rest_cases_n = sum(1 for r in rows if r[0] == "REST")
    grpc_cases_n = len(rows) - rest_cases_n
    five = sum(1 for r in rows if bad(r[0], r[3]))
    unanswered = sum(1 for r in rows if r[3] == "no answer")
    print(f"\nREST cases {rest_cases_n}, gRPC cases {grpc_cases_n}")
    print(f"server errors (5xx / INTERNAL, UNKNOWN, DATA_LOSS, UNAVAILABLE): {five}")
    print(f"unanswered connections: {unanswered}")
    print(f"tracebacks in logs: {tracebacks}; ERROR lines: {errors}")
    lines = {name: len([ln for ln in text.splitlines() if ln.strip() and not LIFECYCLE.search(ln)])
             for name, text in logs.items()}
    print(f"log lines about the cases: rest {lines['rest']} for {rest_cases_n} cases, "
          f"grpc {lines['grpc']} for {grpc_cases_n} cases (at most one each)")
    print(f"REST hang-ups counted in gateway_requests_total{{status=\"499\"}}: {hangups_counted:g} "
          f"for {hangups} hang-up cases (requests cut off by broken framing count too)")
    for target, category, name, outcome in rows:
        if outcome in ("OK",) or outcome.startswith("2"):
            print(f"  accepted: {target} {category} / {name}: {outcome}")
    ok = (five == 0 and unanswered == 0 and not any(tracebacks.values()) and not any(errors.values())
          and hangups_counted >= hangups and lines["rest"] <= rest_cases_n and lines["grpc"] <= grpc_cases_n
          and rest_cases_n >= 100 and grpc_cases_n >= 30)
    print("RESULT: " + ("PASS" if ok else "FAIL"))
    return ok


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        with stack(Path(tmp)) as (rest, grpc_port, _, rest_log, grpc_log):
            rows, counted = asyncio.run(probe(rest, grpc_port))
        logs = {"rest": rest_log.read_text(errors="replace"), "grpc": grpc_log.read_text(errors="replace")}
    ok = report(rows, logs, counted)
    print(f"({time.monotonic() - started:.0f} s)")
    if not ok:
        for name, text in logs.items():
            print(f"--- {name} log (tail) ---\n{text[-3000:]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
