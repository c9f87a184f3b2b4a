"""Traces and logs of the local REST server in Application Insights, through the real exporter.

``python -m http_api`` runs as its own process (the distro installs process-wide providers) with
``APPLICATIONINSIGHTS_CONNECTION_STRING`` pointing at a local stand-in of the ingestion endpoint;
the simulators stand in for Azure OpenAI. What a user would see in the portal: one request per
call, one dependency per upstream attempt with the GenAI attributes, all in the caller's trace,
and the trace reaching Azure OpenAI as a ``traceparent`` header.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_stack import KEYS, settings_tree, start_simulator
from ingestion_standin import Ingestion, ingestion_standin, props, start_process, stop_process, traceparent

from localrun.ports import free_port, wait_port
from simulator import SimulatorServer

BODY = [{"role": "user", "content": "Tell me about Milan"}]


@dataclass
class Traced:
    url: str
    alpha: SimulatorServer
    beta: SimulatorServer
    ingestion: Ingestion
    client: httpx.AsyncClient


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[Traced]:
    async with traced_gateway(tmp_path) as stack:
        yield stack


@pytest.fixture
async def slow_traced(tmp_path: Path) -> AsyncIterator[Traced]:
    """Upstreams that take 200 ms a token: a stream is still running when its caller hangs up."""
    async with traced_gateway(tmp_path, per_token_latency_ms=200.0) as stack:
        yield stack


@asynccontextmanager
async def traced_gateway(tmp_path: Path, **simulator: Any) -> AsyncIterator[Traced]:
    alpha = await start_simulator("AlphaOpenAI", **simulator)
    beta = await start_simulator("BetaOpenAI", **simulator)
    config = tmp_path / "appsettings.json"
    config.write_text(json.dumps(settings_tree({"AlphaOpenAI": alpha, "BetaOpenAI": beta})))
    port = free_port()
    async with ingestion_standin() as ingestion:
        proc = start_process(["-m", "http_api", "--config", str(config), "--port", str(port)],
                             ingestion.environment(), tmp_path / "gateway.log")
        try:
            wait_port(port, proc, timeout=60)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                yield Traced(f"http://127.0.0.1:{port}", alpha, beta, ingestion, client)
        finally:
            await stop_process(proc)
            await alpha.stop()
            await beta.stop()
    log = (tmp_path / "gateway.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


def assert_genai(dep: dict[str, Any], *, tenant: str, instance: str, attempt: int) -> None:
    assert dep["type"] == "GenAI | azure.ai.openai"
    assert dep["target"] == instance
    p = props(dep)
    assert p["gen_ai.operation.name"] == "chat"
    assert p["gen_ai.provider.name"] == "azure.ai.openai"
    assert p["gen_ai.request.model"] == "gpt-35-turbo-16k"
    assert p["gateway.tenant"] == tenant
    assert p["gateway.instance"] == instance
    assert p["gateway.attempt"] == str(attempt)
    assert p["gateway.limited"] == "False"  # the exporter writes str(bool)


async def test_chat_is_one_request_and_one_genai_dependency_in_the_callers_trace(traced: Traced) -> None:
    header, trace_id = traceparent()
    response = await traced.client.post("/openai/chat?tenant=contoso", json=BODY, headers={"traceparent": header})
    assert response.status_code == 200, response.text
    ing = traced.ingestion
    await ing.wait_for(lambda: bool(ing.requests(trace_id)) and bool(ing.dependencies(trace_id)))

    [request] = ing.requests(trace_id)
    assert request["responseCode"] == "200"
    assert request["tags"]["ai.operation.parentId"] == header.split("-")[2]  # the caller's span
    assert props(request)["gateway.tenant"] == "contoso"
    assert props(request)["gateway.instance"] == "AlphaOpenAI"
    [dep] = ing.dependencies(trace_id)
    assert dep["tags"]["ai.operation.parentId"] == request["id"]  # child of the server span
    assert_genai(dep, tenant="contoso", instance="AlphaOpenAI", attempt=1)
    p = props(dep)
    assert p["gen_ai.response.model"]
    assert int(p["gen_ai.usage.input_tokens"]) == int(response.headers["X-Prompt-Tokens"])
    assert int(p["gen_ai.usage.output_tokens"]) == int(response.headers["X-Completion-Tokens"])
    assert p["gateway.usage_source"] == "reported"
    assert "stop" in p["gen_ai.response.finish_reasons"] or "length" in p["gen_ai.response.finish_reasons"]
    assert "gen_ai.input.messages" not in p and "Milan" not in json.dumps(dep)  # no content by default

    # the same trace reached Azure OpenAI, with the dependency's span as parent
    sent = [t for t in traced.alpha.stats.traceparents if t.split("-")[1] == trace_id]
    assert sent == [f"00-{trace_id}-{dep['id']}-01"]


async def test_stream_dependency_ends_with_the_stream_and_carries_its_usage(traced: Traced) -> None:
    header, trace_id = traceparent()
    async with traced.client.stream("POST", "/openai/stream?tenant=fabrikam", json=BODY,
                                    headers={"traceparent": header, "Accept": "text/event-stream"}) as response:
        text = "".join([chunk async for chunk in response.aiter_text()])
    assert response.status_code == 200 and "event: usage" in text
    usage = json.loads(text.split("event: usage\ndata: ")[1].split("\n")[0])
    ing = traced.ingestion
    await ing.wait_for(lambda: bool(ing.requests(trace_id)) and bool(ing.dependencies(trace_id)))
    [request] = ing.requests(trace_id)
    [dep] = ing.dependencies(trace_id)
    assert dep["tags"]["ai.operation.parentId"] == request["id"]
    assert_genai(dep, tenant="fabrikam", instance="BetaOpenAI", attempt=1)
    assert int(props(dep)["gen_ai.usage.output_tokens"]) == usage["completion_tokens"]
    assert int(props(dep)["gen_ai.usage.input_tokens"]) == usage["prompt_tokens"]
    assert props(dep)["gateway.usage_source"] == "reported"
    assert [t.split("-")[1] for t in traced.beta.stats.traceparents] == [trace_id]


async def test_a_caller_hanging_up_mid_stream_is_a_failed_request_in_its_trace(slow_traced: Traced) -> None:
    header, trace_id = traceparent()
    async with slow_traced.client.stream("POST", "/openai/stream?tenant=fabrikam", json=BODY,
                                         headers={"traceparent": header, "Accept": "text/event-stream"}) as response:
        async for _ in response.aiter_raw():
            break  # hang up after the first bytes
    ing = slow_traced.ingestion
    await ing.wait_for(lambda: bool(ing.requests(trace_id)) and bool(ing.dependencies(trace_id)))
    [request] = ing.requests(trace_id)
    assert request["responseCode"] == "200"  # what had been sent
    assert request["success"] is False  # the caller did not get the whole answer
    [dep] = ing.dependencies(trace_id)
    assert dep["tags"]["ai.operation.parentId"] == request["id"]
    assert_genai(dep, tenant="fabrikam", instance="BetaOpenAI", attempt=1)


async def test_failover_attempts_are_sibling_dependencies_and_the_warning_is_in_the_trace(traced: Traced) -> None:
    traced.alpha.set_fault(status=503, count=1)
    for _ in range(3):  # round-robin: within two requests one starts on Alpha and fails over
        header, trace_id = traceparent()
        response = await traced.client.post("/openai/chat?tenant=acme", json=BODY, headers={"traceparent": header})
        assert response.status_code == 200, response.text
        if traced.alpha.stats.faults:
            break
    assert traced.alpha.stats.faults == 1
    ing = traced.ingestion
    await ing.wait_for(lambda: len(ing.dependencies(trace_id)) == 2 and bool(ing.messages(trace_id)))
    [request] = ing.requests(trace_id)
    first, second = sorted(ing.dependencies(trace_id), key=lambda d: props(d)["gateway.attempt"])
    assert {first["tags"]["ai.operation.parentId"], second["tags"]["ai.operation.parentId"]} == {request["id"]}
    assert_genai(first, tenant="acme", instance="AlphaOpenAI", attempt=1)
    assert_genai(second, tenant="acme", instance="BetaOpenAI", attempt=2)
    assert first["success"] is False and props(first)["gateway.error"] == "UpstreamUnavailable"
    assert second["success"] is True and "gen_ai.usage.output_tokens" in props(second)
    assert props(request)["gateway.instance"] == "BetaOpenAI"
    # the log line about the failure went out with the trace and the request span's ids
    [warning] = [m for m in ing.messages(trace_id) if "AlphaOpenAI failed" in m["message"]]
    assert warning["tags"]["ai.operation.parentId"] == request["id"]
    # both upstreams saw the trace, each with its own attempt's span as parent
    assert f"00-{trace_id}-{first['id']}-01" in traced.alpha.stats.traceparents
    assert f"00-{trace_id}-{second['id']}-01" in traced.beta.stats.traceparents


async def test_exported_telemetry_carries_no_secret(traced: Traced) -> None:
    header, trace_id = traceparent()
    response = await traced.client.post("/openai/chat?tenant=contoso", json=BODY,
                                        headers={"traceparent": header, "Authorization": "Bearer not-a-real-jwt"})
    assert response.status_code == 200
    ing = traced.ingestion
    await ing.wait_for(lambda: bool(ing.dependencies(trace_id)))
    exported = "\n".join(ing.bodies)
    for secret in (*KEYS.values(), "not-a-real-jwt", "api-key"):
        assert secret not in exported


async def test_the_callers_sampling_decision_is_followed(traced: Traced) -> None:
    """parentbased_always_on: a caller's unsampled trace is not recorded (but still propagated
    with its flag), its sampled trace is, however many arrive per second."""
    unsampled, dropped_id = traceparent()
    unsampled = unsampled[:-2] + "00"
    assert (await traced.client.post("/openai/chat?tenant=contoso", json=BODY,
                                     headers={"traceparent": unsampled})).status_code == 200
    sampled = [traceparent() for _ in range(20)]
    for header, _ in sampled:
        response = await traced.client.post("/openai/chat?tenant=contoso", json=BODY, headers={"traceparent": header})
        assert response.status_code == 200
    ing = traced.ingestion
    await ing.wait_for(lambda: all(ing.dependencies(trace_id) for _, trace_id in sampled))
    assert ing.requests(dropped_id) == [] and ing.dependencies(dropped_id) == []
    [sent] = [t for t in traced.alpha.stats.traceparents if t.split("-")[1] == dropped_id]
    assert sent.endswith("-00")


async def test_hot_routes_make_the_same_request_span_as_every_other_route(traced: Traced) -> None:
    """/openai/chat and the compatible API skip FastAPI's router (http_api/_hot.py) but their request
    telemetry is FastAPI's own: named after the route template, in the caller's trace, with its status."""
    calls = {
        "POST /openai/chat": ("POST", "/openai/chat?tenant=contoso", BODY),
        "POST /openai/deployments/{deployment}/chat/completions": (
            "POST", "/openai/deployments/gpt-35-turbo-16k/chat/completions?api-version=2024-10-21",
            {"messages": BODY, "max_tokens": 20}),
        "GET /openai/echo": ("GET", "/openai/echo?tenant=contoso&value=7", None),  # FastAPI's router
    }
    traces = {}
    for name, (method, path, body) in calls.items():
        header, trace_id = traceparent()
        headers = {"traceparent": header, "X-Tenant": "contoso"}
        response = await traced.client.request(method, path, json=body, headers=headers)
        assert response.status_code == 200, response.text
        traces[name] = (header, trace_id)
    ing = traced.ingestion
    await ing.wait_for(lambda: all(ing.requests(trace_id) for _, trace_id in traces.values()))
    for name, (header, trace_id) in traces.items():
        [request] = ing.requests(trace_id)
        assert request["name"] == name
        assert request["responseCode"] == "200" and request["success"] is True
        assert request["tags"]["ai.operation.parentId"] == header.split("-")[2]
    [chat] = ing.requests(traces["POST /openai/chat"][1])
    assert props(chat)["gateway.tenant"] == "contoso"  # the gateway's attributes land on that same span
