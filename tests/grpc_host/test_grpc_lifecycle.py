"""Stream cancellation and graceful shutdown, with slow simulated streams (~2-3 s each)."""

from __future__ import annotations

import asyncio
import signal

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_support import HostProcess, StartHost, StartSims, chat_request, gateway_environ, gateway_json

from core import load_settings
from protos import openai_pb2_grpc

SLOW = {
    "zero_latency": False,
    "per_token_latency_ms": 40.0,
    "min_completion_tokens": 50,
    "max_completion_tokens": 60,
}


async def wait_until(condition: object, seconds: float = 15.0) -> bool:
    for _ in range(int(seconds / 0.05)):  # bounded poll
        if condition():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


async def test_cancelling_a_stream_stops_the_upstream_call(start_sims: StartSims, start_grpc_host: StartHost) -> None:
    sims = await start_sims(**SLOW)
    host = await start_grpc_host(load_settings(environ=gateway_environ(sims)))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        stub = openai_pb2_grpc.OpenAIServiceGrpcStub(channel)
        call = stub.GetChatCompletionsStreaming(chat_request("contoso"))
        for _ in range(2):
            assert (await call.read()).message
        call.cancel()
        # The simulator saw its client (the gateway) hang up before the end of the completion,
        # and the host recorded the call as cancelled.
        value = host.gateway.registry.get_sample_value
        route = "/OpenAiRestApi.OpenAIServiceGrpc/GetChatCompletionsStreaming"
        status = {"route": route, "status": "CANCELLED"}
        assert await wait_until(lambda: sims.alpha.stats.aborted == 1 and value("gateway_requests_total", status) == 1)
    stats = sims.alpha.stats
    assert stats.succeeded == 0 and stats.generated.completion_tokens == 0
    # The partial stream is still charged to the tenant (estimated with tiktoken).
    labels = {"openai_name": "alphaopenai", "tenant_name": "contoso", "method_name": "stream"}
    assert (value("openai_prompt_tokens_total", labels) or 0) > 0


@pytest.mark.slow
async def test_sigterm_drains_an_in_flight_stream_and_exits_0(start_sims: StartSims, host_process: object) -> None:
    sims = await start_sims(**SLOW)
    proc: HostProcess = await host_process(gateway_json(sims), "--grace-seconds", "20")  # type: ignore[operator]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await health.read()).status == health_pb2.HealthCheckResponse.SERVING
        stub = openai_pb2_grpc.OpenAIServiceGrpcStub(channel)
        call = stub.GetChatCompletionsStreaming(chat_request("contoso"))
        parts = [(await call.read()).message]

        proc.process.send_signal(signal.SIGTERM)
        before_sigterm = len(parts)
        # Watchers (load balancers, meshes) learn at once that the pod is going away ...
        assert (await health.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        # ... while the stream that was in flight runs to its end.
        for _ in range(10_000):  # bounded: a completion has < 100 pieces
            reply = await call.read()
            if reply is grpc.aio.EOF:
                break
            parts.append(reply.message)
        assert await call.code() == grpc.StatusCode.OK
        assert len(parts) > before_sigterm + 5  # most of the stream arrived after SIGTERM
    assert await proc.wait() == 0, "".join(proc.log)

    stats = sims.alpha.stats
    assert stats.succeeded == 1 and stats.aborted == 0
    assert len(parts) > 10 and "".join(parts).strip()
    assert any("draining" in line for line in proc.log)


@pytest.mark.slow
async def test_the_process_refuses_bad_configuration_naming_the_key(host_process: object, tmp_path: object) -> None:
    bad = {"AzureOpenAI": {"Services": {"AlphaOpenAI": {"Endpoint": "not a url"}}}}
    with pytest.raises(AssertionError, match="AzureOpenAI:Services:AlphaOpenAI:Endpoint"):
        await host_process(bad)  # type: ignore[operator]
