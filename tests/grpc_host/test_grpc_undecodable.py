"""Bytes protobuf cannot parse: INVALID_ARGUMENT with a plain message, counted, no traceback."""

from __future__ import annotations

import logging

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from grpc_host import RunningHost
from protos import openai_pb2

SERVICE = openai_pb2.DESCRIPTOR.services_by_name["OpenAIServiceGrpc"].full_name
GARBAGE = {
    "truncated varint": b"\xff",
    "length past the end": b"\x0a\x40abc",
    "invalid UTF-8 in a string field": b"\x0a\x02\xff\xfe",
    "reserved wire type": b"\x0f\x00",
}


async def requests_total(host: RunningHost, route: str, status: str) -> float:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{host.metrics_port}/metrics") as response:
            text = await response.text()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "gateway_requests_total" and s.labels == {"route": route, "status": status})


@pytest.mark.parametrize("method", ["Echo", "GetChatCompletions", "GetChatCompletionsStreaming"])
async def test_undecodable_requests_get_invalid_argument(
    host: RunningHost, channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    route = f"/{SERVICE}/{method}"
    streaming = method.endswith("Streaming")
    call = (channel.unary_stream if streaming else channel.unary_unary)(route)  # raw bytes both ways
    caplog.set_level(logging.INFO)
    for case, payload in GARBAGE.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            if streaming:
                [m async for m in call(payload, timeout=10)]
            else:
                await call(payload, timeout=10)
        error = caught.value
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (case, error.code(), error.details())
        details = error.details() or ""
        assert "not a valid OpenAiRestApi." in details and "protos/openai.proto" in details, details
        assert "Error" not in details.split("(")[0] and "<class" not in details, details
    assert await requests_total(host, route, "INVALID_ARGUMENT") == len(GARBAGE)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert len([r for r in caplog.records if "not a valid" in r.getMessage()]) == len(GARBAGE)


async def test_decodable_requests_are_untouched(channel: grpc.aio.Channel) -> None:
    echo = channel.unary_unary(f"/{SERVICE}/Echo", response_deserializer=openai_pb2.EchoResponse.FromString)
    reply = await echo(openai_pb2.EchoRequest(tenant="contoso", value=7).SerializeToString(), timeout=10)
    assert reply.message == "tenant: contoso value: 7"


async def test_health_and_reflection_reject_undecodable_requests_too(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    async def check() -> object:
        return await channel.unary_unary("/grpc.health.v1.Health/Check")(b"\xff", timeout=10)

    async def watch() -> object:
        return [m async for m in channel.unary_stream("/grpc.health.v1.Health/Watch")(b"\xff", timeout=10)]

    async def reflect() -> object:  # bidirectional stream: the first undecodable message ends it
        call = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")(timeout=10)
        await call.write(b"\xff")
        await call.done_writing()
        return [m async for m in call]

    for rpc in (check, watch, reflect):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await rpc()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (rpc.__name__, caught.value.details())
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
