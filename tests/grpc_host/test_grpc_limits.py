"""Tenant limits on the gRPC host: RESOURCE_EXHAUSTED with retry-after-ms, x-ratelimit-* metadata."""

from __future__ import annotations

import grpc
import pytest
from grpc_support import Sims, StartHost, chat_request, gateway_environ

from core import load_settings
from protos import openai_pb2_grpc

LIMITS = {"Limits__Tenants__acme__TokensPerMinute": "6000", "Limits__Tenants__acme__RequestsPerMinute": "2"}


async def test_over_the_limit_is_resource_exhausted_with_retry_after_ms(sims: Sims, start_grpc_host: StartHost) -> None:
    host = await start_grpc_host(load_settings(environ=gateway_environ(sims, **LIMITS)))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        stub = openai_pb2_grpc.OpenAIServiceGrpcStub(channel)
        call = stub.GetChatCompletions(chat_request("acme"))
        assert (await call).result
        trailers = dict(await call.trailing_metadata() or ())
        streamed = stub.GetChatCompletionsStreaming(chat_request("acme"))
        assert [m.message async for m in streamed]
        stream_trailers = dict(await streamed.trailing_metadata() or ())
        before = sims.alpha.stats.requests + sims.beta.stats.requests
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetChatCompletions(chat_request("acme"))
        after = sims.alpha.stats.requests + sims.beta.stats.requests
        free = stub.GetChatCompletions(chat_request("contoso"))
        await free
        free_trailers = dict(await free.trailing_metadata() or ())
    assert trailers["x-ratelimit-limit-tokens"] == "6000" and trailers["x-ratelimit-remaining-requests"] == "1"
    assert 6000 - int(trailers["x-ratelimit-remaining-tokens"]) == int(trailers["x-total-tokens"])
    assert stream_trailers["x-ratelimit-remaining-requests"] == "0"
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    failure = dict(refused.value.trailing_metadata() or ())
    assert 1000 <= int(failure["retry-after-ms"]) <= 67_000 and failure["x-ratelimit-remaining-requests"] == "0"
    assert "acme" in (refused.value.details() or "")
    assert after == before  # never reached an instance
    assert not any(k.startswith("x-ratelimit") for k in free_trailers)
