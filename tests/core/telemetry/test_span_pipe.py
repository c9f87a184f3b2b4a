"""The span export process (core/telemetry/_span_pipe.py): spans handed to a real child process
running the real Azure Monitor exporter, which posts envelopes to a local stand-in of the
ingestion endpoint. What an operator relies on: a graceful stop loses nothing, the child never
outlives the gateway, and a stalled export drops spans only by count, never by blocking."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ingestion_standin import Ingestion, ingestion_standin, props
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, generate_latest

from core import Completion, Usage
from core.telemetry import Tracing
from core.telemetry._span_pipe import DroppedSpans, SpanPipe

ROOT = Path(__file__).resolve().parents[3]
DONE = Completion("Milan is in Lombardy.", "AlphaOpenAI", Usage(12, 6), usage_reported=True)
WHERE = {"tenant": "contoso", "instance": "AlphaOpenAI", "model": "gpt-4o",
         "endpoint": "https://alpha.openai.azure.com/", "attempt": 1}


@pytest.fixture(autouse=True)
def _nothing_leaves_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child inherits the environment: no statsbeat, no control-plane polling."""
    monkeypatch.setenv("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED", "true")


def pipe_to(ingestion: Ingestion, **environ: str) -> tuple[TracerProvider, SpanPipe]:
    resource = Resource.create({"service.name": "pipe-test"})
    pipe = SpanPipe({"connection_string": ingestion.connection_string, "resource": dict(resource.attributes)},
                    environ)
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(pipe)
    return provider, pipe


def requests_with_attempts(provider: TracerProvider, count: int) -> Iterator[str]:
    """``count`` gateway-like requests (SERVER span + GenAI attempt); their span ids, in hex."""
    tracer = provider.get_tracer("test")
    tracing = Tracing(provider.get_tracer("core.gateway"))
    for i in range(count):
        with tracer.start_as_current_span(f"POST /openai/chat {i}", kind=SpanKind.SERVER) as server:
            with tracing.attempt("chat", **WHERE) as attempt:  # type: ignore[arg-type]
                attempt.finish(DONE, model="gpt-4o-2024-08-06", finish_reasons=["stop"])
            yield f"{server.get_span_context().span_id:016x}"


async def test_a_graceful_stop_exports_every_span_handed_over() -> None:
    async with ingestion_standin() as ingestion:
        # A schedule delay longer than the test: everything goes out at shutdown.
        provider, pipe = pipe_to(ingestion, OTEL_BSP_SCHEDULE_DELAY="600000")
        ids = list(requests_with_attempts(provider, 300))
        await asyncio.to_thread(provider.shutdown)  # the stand-in runs in this loop
        assert pipe.dropped == 0
        assert pipe.child_exit_code == 0  # the export process exited by itself, cleanly
        traces = [body for body in ingestion.bodies if '"RequestData"' in body]  # (not the SDK stats exporter's)
        assert traces and all(body.startswith('[{"name":"') for body in traces)  # orjson's JSON, not the json
        # module's ('": "'): the same value as the exporter's (tests/core/telemetry/test_envelopes.py)
        requests = ingestion.of_type("RequestData")
        dependencies = ingestion.of_type("RemoteDependencyData")
        assert sorted(e["data"]["baseData"]["id"] for e in requests) == sorted(ids)
        assert len(dependencies) == 300
        dep = dependencies[0]
        assert dep["data"]["baseData"]["type"] == "GenAI | azure.ai.openai"
        assert dep["data"]["baseData"]["target"] == "AlphaOpenAI"
        assert props(dep["data"]["baseData"]) == {  # customDimensions, as in-process
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "azure.ai.openai",
            "gen_ai.system": "azure.ai.openai", "gen_ai.request.model": "gpt-4o", "gateway.tenant": "contoso",
            "gateway.instance": "AlphaOpenAI", "gateway.attempt": "1", "gateway.limited": "False",
            "gen_ai.usage.input_tokens": "12", "gen_ai.usage.output_tokens": "6", "gateway.usage_source": "reported",
            "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.response.finish_reasons": "('stop',)"}
        assert dep["tags"]["ai.cloud.role"] == "pipe-test"
        parents = {e["tags"]["ai.operation.parentId"] for e in dependencies}
        assert parents == set(ids)  # each attempt under its request, in the request's trace


PARENT = textwrap.dedent("""
    import sys, time
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from core.telemetry._span_pipe import SpanPipe

    pipe = SpanPipe({"connection_string": sys.argv[1], "resource": {"service.name": "killed-parent"}},
                    {"OTEL_BSP_SCHEDULE_DELAY": "600000"})
    provider = TracerProvider(resource=Resource.create({"service.name": "killed-parent"}))
    provider.add_span_processor(pipe)
    for i in range(50):
        provider.get_tracer("t").start_span(f"handed over {i}").end()
    pipe.force_flush()
    print(pipe.child_pid, flush=True)
    time.sleep(600)
""")


def spawn_parent(connection_string: str) -> subprocess.Popen[bytes]:
    """A process with a span pipe that hands 50 spans over, prints its child's PID and sleeps."""
    return subprocess.Popen([sys.executable, "-c", PARENT, connection_string], cwd=ROOT, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


def alive(pid: int) -> bool:
    """``pid`` runs and is not a zombie (a zombie has exited; only its entry waits for a reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_the_export_process_exits_with_its_parent_even_when_killed() -> None:
    async with ingestion_standin() as ingestion:
        parent = spawn_parent(ingestion.connection_string)
        try:
            assert parent.stdout is not None
            child = int((await asyncio.to_thread(parent.stdout.readline)).strip())
            assert alive(child)
        finally:
            kill(parent)  # SIGKILL: no atexit, no shutdown; the child sees only its input closing
        # What was handed over before the kill is still exported; then the child exits.
        await ingestion.wait_for(lambda: len(ingestion.of_type("RemoteDependencyData")) == 50, seconds=60)
        for _ in range(600):
            if not alive(child):
                break
            await asyncio.sleep(0.1)
        assert not alive(child), f"export process {child} outlived its killed parent"


async def test_a_stalled_export_drops_spans_by_count_and_never_blocks() -> None:
    async with ingestion_standin() as ingestion:
        provider, pipe = pipe_to(ingestion, OTEL_BSP_SCHEDULE_DELAY="10", OTEL_BSP_MAX_QUEUE_SIZE="50")
        registry = CollectorRegistry()
        registry.register(DroppedSpans(lambda: pipe.dropped))
        os.kill(pipe.child_pid, signal.SIGSTOP)  # the export process stops reading: the pipe fills
        try:
            made: list[int] = []
            maker = threading.Thread(target=lambda: made.extend(  # on_end must never wait for the child
                1 for _ in requests_with_attempts(provider, 2500)))
            maker.start()
            maker.join(timeout=120)
            assert not maker.is_alive(), "ending spans blocked on a stalled export process"
        finally:
            os.kill(pipe.child_pid, signal.SIGCONT)
        await asyncio.to_thread(provider.shutdown)
        assert pipe.dropped > 0
        exposed = generate_latest(registry).decode()
        assert f"gateway_trace_spans_dropped_total {float(pipe.dropped)}" in exposed
        received = len(ingestion.of_type("RequestData")) + len(ingestion.of_type("RemoteDependencyData"))
        assert received + pipe.dropped == 2 * len(made) == 5000  # every span arrived or was counted


async def _received(ingestion: Ingestion, requests: int, seconds: float = 60) -> int:
    """Request envelopes received, once there are ``requests`` of them (or ``seconds`` have passed)."""
    for _ in range(int(seconds * 10)):
        if len(ingestion.of_type("RequestData")) >= requests:
            break
        await asyncio.sleep(0.1)
    return len(ingestion.of_type("RequestData"))


async def test_a_dead_export_process_is_replaced_and_nothing_made_meanwhile_is_lost() -> None:
    async with ingestion_standin() as ingestion:
        provider, pipe = pipe_to(ingestion, OTEL_BSP_SCHEDULE_DELAY="50")
        first = set(await asyncio.to_thread(lambda: list(requests_with_attempts(provider, 100))))
        assert await _received(ingestion, 100) == 100
        dead = pipe.child_pid
        os.kill(dead, signal.SIGKILL)  # an export process that crashed
        for _ in range(200):
            if not alive(dead):
                break
            await asyncio.sleep(0.05)
        assert not alive(dead)
        later = set(await asyncio.to_thread(lambda: list(requests_with_attempts(provider, 100))))
        assert await _received(ingestion, 200) == 200  # the queue went to the new export process
        assert pipe.child_pid != dead and pipe.child_exit_code is None
        await asyncio.to_thread(provider.shutdown)
        assert pipe.dropped == 0 and pipe.child_exit_code == 0
        ids = {e["data"]["baseData"]["id"] for e in ingestion.of_type("RequestData")}
        assert ids == first | later
        assert len(ingestion.of_type("RemoteDependencyData")) == 200



async def test_each_request_to_the_ingestion_endpoint_is_a_whole_batch_while_spans_keep_coming() -> None:
    """Spans queued beyond a full batch (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``) go first in the next
    batch, or on the schedule: never in a request of their own right after the full one (each
    request costs the export process as much as hundreds of spans)."""
    async with ingestion_standin() as ingestion:
        provider, pipe = pipe_to(ingestion, OTEL_BSP_SCHEDULE_DELAY="600000", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="64")
        tracer = provider.get_tracer("t")
        switch = sys.getswitchinterval()
        sys.setswitchinterval(5.0)  # the writer, woken at 64 spans, gets the GIL once all 96 are queued
        try:
            for i in range(96):
                tracer.start_span(f"POST /openai/chat {i}", kind=SpanKind.SERVER).end()
        finally:
            sys.setswitchinterval(switch)

        def sizes() -> list[int]:
            return [sum(e["data"]["baseType"] == "RequestData" for e in json.loads(body))
                    for body in ingestion.bodies if '"RequestData"' in body]

        await ingestion.wait_for(lambda: sum(sizes()) >= 64)
        await asyncio.sleep(1.0)  # (the old writer sent the 32 left straight after the 64)
        assert sizes() == [64]
        await asyncio.to_thread(pipe.force_flush)
        await ingestion.wait_for(lambda: sum(sizes()) >= 96)
        assert sizes() == [64, 32]
        await asyncio.to_thread(provider.shutdown)
        assert pipe.dropped == 0

HOST = textwrap.dedent("""
    import glob, json, os, sys
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind
    from core import Completion, Usage, configure_telemetry, load_settings
    from core.telemetry import Tracing

    assert configure_telemetry(load_settings(environ={}), os.environ, service_name="host-test",
                               export_process=sys.argv[1] == "child")
    tracing = Tracing(trace.get_tracer("core.gateway"))
    with trace.get_tracer("host").start_as_current_span("POST /openai/chat", kind=SpanKind.SERVER):
        with tracing.attempt("chat", tenant="contoso", instance="AlphaOpenAI", model="gpt-4o",
                             endpoint="https://alpha.openai.azure.com/", attempt=1) as attempt:
            attempt.finish(Completion("hi", "AlphaOpenAI", Usage(3, 1), usage_reported=True), model="gpt-4o")
    children = [c for f in glob.glob(f"/proc/{os.getpid()}/task/*/children") for c in open(f).read().split()]
    print(json.dumps({"children": len(children)}), flush=True)
    trace.get_tracer_provider().shutdown()
""")


def run_host(mode: str, ingestion: Ingestion) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", HOST, mode], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**ingestion.environment(), "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize(("mode", "children"), [("child", 1), ("in-process", 0)])
async def test_both_export_modes_send_the_same_telemetry(mode: str, children: int) -> None:
    """``export_process``: the REST and gRPC hosts export from a child process, the Functions
    worker in-process (configure_telemetry's default); Application Insights gets the same."""
    async with ingestion_standin() as ingestion:
        done = await asyncio.to_thread(run_host, mode, ingestion)
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout.splitlines()[-1]) == {"children": children}
        await ingestion.wait_for(lambda: bool(ingestion.of_type("RemoteDependencyData")))
        [request], [dep] = ingestion.of_type("RequestData"), ingestion.of_type("RemoteDependencyData")
        assert dep["tags"]["ai.operation.parentId"] == request["data"]["baseData"]["id"]
        assert dep["tags"]["ai.operation.id"] == request["tags"]["ai.operation.id"]
        assert dep["tags"]["ai.cloud.role"] == request["tags"]["ai.cloud.role"] == "host-test"
        assert dep["data"]["baseData"]["type"] == "GenAI | azure.ai.openai"
        assert props(dep["data"]["baseData"])["gen_ai.usage.input_tokens"] == "3"


PRIORITY_HOST = textwrap.dedent("""
    import glob, os, sys
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind
    from core import configure_telemetry, load_settings

    assert configure_telemetry(load_settings(environ=os.environ), os.environ, service_name="host-test",
                               export_process=True)
    with trace.get_tracer("host").start_as_current_span("POST /openai/chat", kind=SpanKind.SERVER):
        pass
    trace.get_tracer_provider().force_flush()
    children = [c for f in glob.glob(f"/proc/{os.getpid()}/task/*/children") for c in open(f).read().split()]
    print(*children, flush=True)
    sys.stdin.read()  # until the test has looked at the export process
    trace.get_tracer_provider().shutdown()
""")


def start_host(script: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def policies(pid: int) -> set[int]:
    """The CPU scheduling policy of each thread of a process, as the kernel reports it."""
    return {os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.mark.parametrize(("setting", "policy"), [(None, "SCHED_IDLE"), ("Normal", "SCHED_OTHER")])
async def test_the_export_process_runs_on_cpu_time_serving_leaves_unless_told_otherwise(
        setting: str | None, policy: str) -> None:
    """``Telemetry:ExportPriority``: by default (idle) the kernel runs the export process only on
    CPU time nothing else wants, so a request does not wait a time slice behind an export batch; the
    host's own threads keep the normal policy. ``normal``: the export process competes like the host."""
    async with ingestion_standin() as ingestion:
        env = {**ingestion.environment(), "PYTHONPATH": str(ROOT)}
        if setting is not None:
            env["Telemetry__ExportPriority"] = setting
        host = start_host(PRIORITY_HOST, env)
        assert host.stdin is not None and host.stdout is not None
        try:
            [child] = map(int, (await asyncio.wait_for(asyncio.to_thread(host.stdout.readline), 60)).split())
            # its span received: the export process has read its configuration and set its policy
            await ingestion.wait_for(lambda: bool(ingestion.of_type("RequestData")))
            assert policies(child) == {getattr(os, policy)}
            assert policies(host.pid) == {os.SCHED_OTHER}
        finally:
            host.stdin.close()
            try:
                code = await asyncio.to_thread(host.wait, 60)
            except subprocess.TimeoutExpired:
                host.kill()
                raise
        assert code == 0
