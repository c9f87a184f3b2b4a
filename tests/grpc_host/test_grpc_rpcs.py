"""The three RPCs through the real host, backed by the simulator over real HTTP."""

from __future__ import annotations

import asyncio

import grpc
import jwt
import pytest
from grpc_support import Sims, StartHost, chat_request, gateway_environ

from core import load_settings
from grpc_host import RunningHost
from protos import openai_pb2, openai_pb2_grpc

Stub = openai_pb2_grpc.OpenAIServiceGrpcStub


def bearer(tenant: str) -> tuple[tuple[str, str], ...]:
    key = "test-signing-key-of-32-bytes-long!"  # the core reads claims; signatures are a later issue
    token = jwt.encode({"tenant": tenant, "sub": "user-1"}, key, algorithm="HS256")
    return (("authorization", f"Bearer {token}"),)


async def test_echo_answers_like_the_csharp_sample(stub: Stub) -> None:
    reply = await stub.Echo(openai_pb2.EchoRequest(tenant="  Contoso ", value=42))
    assert reply.message == "tenant: contoso value: 42"


@pytest.mark.parametrize(
    ("field", "metadata", "expected"),
    [
        ("Contoso", (("x-tenant", "fabrikam"),), "contoso"),  # the field wins
        ("", (("x-tenant", "Fabrikam"),), "fabrikam"),
        ("", bearer("Acme"), "acme"),
        ("", (("x-tenant", "contoso"), *bearer("acme")), "contoso"),  # metadata before the JWT
    ],
    ids=["field", "x-tenant", "jwt", "x-tenant-before-jwt"],
)
async def test_tenant_sources(stub: Stub, field: str, metadata: tuple[tuple[str, str], ...], expected: str) -> None:
    reply = await stub.Echo(openai_pb2.EchoRequest(tenant=field, value=1), metadata=metadata)
    assert reply.message == f"tenant: {expected} value: 1"


async def test_unary_chat_is_served_by_the_tenants_instance(stub: Stub, sims: Sims) -> None:
    reply = await stub.GetChatCompletions(chat_request("fabrikam", ("user", "Tell me about Paris")))
    assert reply.result.strip()
    assert sims.beta.stats.succeeded == 1 and sims.alpha.stats.requests == 0


async def test_stream_concatenates_to_the_unary_answer(stub: Stub, sims: Sims) -> None:
    """The simulator answers deterministically, so stream and unary must carry the same text."""
    request = chat_request("contoso", ("system", "Be brief."), ("user", "Tell me about Paris"))
    unary = await stub.GetChatCompletions(request)
    parts = [m.message async for m in stub.GetChatCompletionsStreaming(request)]
    assert len(parts) > 1
    assert "".join(parts) == unary.result


@pytest.mark.parametrize("source", ["x-tenant", "jwt"])
async def test_chat_and_stream_take_the_tenant_from_metadata(stub: Stub, sims: Sims, source: str) -> None:
    metadata = (("x-tenant", "Fabrikam"),) if source == "x-tenant" else bearer("fabrikam")
    request = chat_request("", ("user", "Hello"))
    assert (await stub.GetChatCompletions(request, metadata=metadata)).result
    assert [m async for m in stub.GetChatCompletionsStreaming(request, metadata=metadata)]
    assert sims.beta.stats.succeeded == 2 and sims.alpha.stats.requests == 0


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        (chat_request("contoso", ("user", "")), "empty"),
        (chat_request("contoso", ("wizard", "hi")), "unknown role"),
        (chat_request("contoso", ("system", "only a system prompt")), "no user message"),
        (openai_pb2.GetChatCompletionsRequest(tenant="contoso"), "conversation is empty"),
        (chat_request("", ("user", "hi")), "no tenant given"),
        (chat_request("bad tenant!", ("user", "hi")), "tenant"),
    ],
    ids=["empty-content", "bad-role", "no-user", "no-messages", "no-tenant", "bad-tenant"],
)
async def test_bad_input_is_invalid_argument_with_an_actionable_detail(
    stub: Stub, sims: Sims, request_: openai_pb2.GetChatCompletionsRequest, fragment: str
) -> None:
    for call in (stub.GetChatCompletions, stub.GetChatCompletionsStreaming):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            result = call(request_)
            if isinstance(result, grpc.aio.UnaryStreamCall):
                _ = [m async for m in result]
            else:
                await result
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in info.value.details()
    assert sims.alpha.stats.requests == 0 and sims.beta.stats.requests == 0


async def test_a_malformed_bearer_token_is_unauthenticated(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Echo(openai_pb2.EchoRequest(value=1), metadata=(("authorization", "Bearer not-a-jwt"),))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "not-a-jwt" not in info.value.details()  # never echo credentials


async def test_upstream_down_is_unavailable(sims: Sims, start_grpc_host: StartHost) -> None:
    """Alpha's endpoint points at a port nobody listens on: unary and streaming say UNAVAILABLE."""
    settings = load_settings(environ=gateway_environ(sims))
    await sims.alpha.stop()
    host = await start_grpc_host(settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        stub = Stub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await stub.GetChatCompletions(chat_request("contoso"))
        with pytest.raises(grpc.aio.AioRpcError) as streaming:
            _ = [m async for m in stub.GetChatCompletionsStreaming(chat_request("contoso"))]
        # The other tenant's instance is unaffected.
        assert (await stub.GetChatCompletions(chat_request("fabrikam"))).result
    for info in (unary, streaming):
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "alphaopenai" in info.value.details().lower()


async def test_upstream_503_is_unavailable_and_429_is_resource_exhausted(stub: Stub, sims: Sims) -> None:
    sims.alpha.set_fault(status=503, count=1)
    with pytest.raises(grpc.aio.AioRpcError) as unavailable:
        await stub.GetChatCompletions(chat_request("contoso"))
    assert unavailable.value.code() == grpc.StatusCode.UNAVAILABLE

    sims.alpha.set_fault(status=429, count=1, retry_after_ms=3000)
    with pytest.raises(grpc.aio.AioRpcError) as limited:
        _ = [m async for m in stub.GetChatCompletionsStreaming(chat_request("contoso"))]
    assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(limited.value.trailing_metadata() or ())
    assert trailers.get("retry-after") == "3"


async def test_requests_are_counted_by_method_and_status(stub: Stub, host: RunningHost) -> None:
    await stub.Echo(openai_pb2.EchoRequest(tenant="contoso", value=1))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetChatCompletions(chat_request("contoso", ("user", "")))
    value = host.gateway.registry.get_sample_value
    route = "/OpenAiRestApi.OpenAIServiceGrpc/"
    assert value("gateway_requests_total", {"route": route + "Echo", "status": "OK"}) == 1
    labels = {"route": route + "GetChatCompletions", "status": "INVALID_ARGUMENT"}
    assert value("gateway_requests_total", labels) == 1


async def test_a_request_over_the_body_limit_is_refused_before_the_upstream(stub: Stub, sims: Sims) -> None:
    huge = "x" * 1_100_000  # Gateway:MaxBodyBytes defaults to 1 MiB, as for REST
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetChatCompletions(chat_request("contoso", ("user", huge)))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (info.value.details() or "")
    assert sims.alpha.stats.requests == 0


async def test_every_instance_limited_is_resource_exhausted_with_retry_after_ms_at_once(stub: Stub, sims: Sims) -> None:
    sims.alpha.set_fault(status=429, retry_after_ms=4000, retry_style="seconds")
    sims.beta.set_fault(status=429, retry_after_ms=3500, retry_style="reset")
    started = asyncio.get_running_loop().time()
    with pytest.raises(grpc.aio.AioRpcError) as limited:
        await stub.GetChatCompletions(chat_request("initech"))
    elapsed = asyncio.get_running_loop().time() - started
    sims.alpha.clear_faults()
    sims.beta.clear_faults()
    assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(limited.value.trailing_metadata() or ())
    assert 3000 <= int(trailers["retry-after-ms"]) <= 3500  # the soonest instance's recovery
    assert elapsed < 2.0  # Gateway:MaxWaitSeconds: no sleeping on one instance
