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
