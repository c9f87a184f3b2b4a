"""Traces of the gRPC host in Application Insights, through the real exporter.

``python -m grpc_host`` runs as its own process with ``APPLICATIONINSIGHTS_CONNECTION_STRING``
pointing at a local stand-in of the ingestion endpoint. A caller's ``traceparent`` metadata is
continued: one request per RPC, one GenAI dependency per upstream attempt, the same trace id at
the simulated Azure OpenAI.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_support import READY, Sims, StartSims, chat_request, gateway_json
from ingestion_standin import Ingestion, ingestion_standin, props, start_process, stop_process, traceparent

from localrun.ports import free_port, wait_port
from protos import openai_pb2_grpc

SERVICE = "/OpenAiRestApi.OpenAIServiceGrpc"


@pytest.fixture
async def traced_grpc(
    start_sims: StartSims, tmp_path: Path
) -> AsyncIterator[tuple[openai_pb2_grpc.OpenAIServiceGrpcStub, Sims, Ingestion]]:
    sims = await start_sims()
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps(gateway_json(sims)))
    port, metrics_port = free_port(), free_port()
    log = tmp_path / "grpc_host.log"
    async with ingestion_standin() as ingestion:
        proc = start_process(["-m", "grpc_host", "--config", str(config), "--port", str(port),
                              "--metrics-port", str(metrics_port)], ingestion.environment(), log)
        try:
            wait_port(port, proc, timeout=60)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield openai_pb2_grpc.OpenAIServiceGrpcStub(channel), sims, ingestion
        finally:
            assert await stop_process(proc) == 0
    text = log.read_text(errors="replace")
    assert READY.search(text) and "Traceback" not in text, text[-3000:]


def check_dependency(dep: dict[str, object], *, tenant: str, instance: str, attempt: int) -> None:
    p = props(dep)
    assert dep["type"] == "GenAI | azure.ai.openai" and dep["target"] == instance
    assert p["gen_ai.operation.name"] == "chat" and p["gen_ai.provider.name"] == "azure.ai.openai"
    assert p["gen_ai.request.model"] == "gpt-35-turbo"
    assert (p["gateway.tenant"], p["gateway.instance"], p["gateway.attempt"]) == (tenant, instance, str(attempt))
    assert p["gateway.limited"] == "False"


async def test_unary_chat_continues_the_callers_trace_to_azure_openai(traced_grpc) -> None:  # type: ignore[no-untyped-def]
    stub, sims, ing = traced_grpc
    header, trace_id = traceparent()
    call = stub.GetChatCompletions(chat_request("contoso"), metadata=(("traceparent", header),))
    await call
    trailers = dict(await call.trailing_metadata())
    await ing.wait_for(lambda: bool(ing.requests(trace_id)) and bool(ing.dependencies(trace_id)))
    [request] = ing.requests(trace_id)
    assert request["name"] == f"{SERVICE}/GetChatCompletions" and request["responseCode"] == "0"
    assert request["tags"]["ai.operation.parentId"] == header.split("-")[2]
    assert props(request)["gateway.instance"] == "AlphaOpenAI"
    [dep] = ing.dependencies(trace_id)
    assert dep["tags"]["ai.operation.parentId"] == request["id"]
    check_dependency(dep, tenant="contoso", instance="AlphaOpenAI", attempt=1)
    assert props(dep)["gen_ai.usage.output_tokens"] == trailers["x-completion-tokens"]
    assert props(dep)["gen_ai.usage.input_tokens"] == trailers["x-prompt-tokens"]
    assert f"00-{trace_id}-{dep['id']}-01" in sims.alpha.stats.traceparents


async def test_streaming_rpc_has_one_dependency_with_the_streams_usage(traced_grpc) -> None:  # type: ignore[no-untyped-def]
    stub, sims, ing = traced_grpc
    header, trace_id = traceparent()
    call = stub.GetChatCompletionsStreaming(chat_request("fabrikam"), metadata=(("traceparent", header),))
    parts = [reply.message async for reply in call]
    trailers = dict(await call.trailing_metadata())
    assert parts
    await ing.wait_for(lambda: bool(ing.requests(trace_id)) and bool(ing.dependencies(trace_id)))
    [request] = ing.requests(trace_id)
    assert request["name"] == f"{SERVICE}/GetChatCompletionsStreaming"
    [dep] = ing.dependencies(trace_id)
    assert dep["tags"]["ai.operation.parentId"] == request["id"]
    check_dependency(dep, tenant="fabrikam", instance="BetaOpenAI", attempt=1)
    assert props(dep)["gen_ai.usage.output_tokens"] == trailers["x-completion-tokens"]
    assert props(dep)["gateway.usage_source"] == "reported"
    assert f"00-{trace_id}-{dep['id']}-01" in sims.beta.stats.traceparents


async def test_failover_attempts_are_sibling_dependencies_of_the_rpc(traced_grpc) -> None:  # type: ignore[no-untyped-def]
    stub, sims, ing = traced_grpc
    sims.alpha.set_fault(status=503, count=1)
    for _ in range(3):  # round-robin: within two calls one starts on Alpha and fails over
        header, trace_id = traceparent()
        await stub.GetChatCompletions(chat_request("acme"), metadata=(("traceparent", header),))
        if sims.alpha.stats.faults:
            break
    assert sims.alpha.stats.faults == 1
    await ing.wait_for(lambda: len(ing.dependencies(trace_id)) == 2 and bool(ing.requests(trace_id)))
    [request] = ing.requests(trace_id)
    first, second = sorted(ing.dependencies(trace_id), key=lambda d: props(d)["gateway.attempt"])
    assert {first["tags"]["ai.operation.parentId"], second["tags"]["ai.operation.parentId"]} == {request["id"]}
    check_dependency(first, tenant="acme", instance="AlphaOpenAI", attempt=1)
    check_dependency(second, tenant="acme", instance="BetaOpenAI", attempt=2)
    assert first["success"] is False and props(first)["gateway.error"] == "UpstreamUnavailable"
    assert second["success"] is True
    assert f"00-{trace_id}-{first['id']}-01" in sims.alpha.stats.traceparents
    assert f"00-{trace_id}-{second['id']}-01" in sims.beta.stats.traceparents
    for secret in ("sim-key-alpha", "sim-key-beta"):
        assert all(secret not in body for body in ing.bodies)
