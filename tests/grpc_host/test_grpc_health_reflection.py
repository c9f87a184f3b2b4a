"""Standard grpc.health.v1 and server reflection, as grpcurl / Kubernetes probes use them."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


@pytest.mark.parametrize("service", ["", "OpenAiRestApi.OpenAIServiceGrpc"])
async def test_health_is_serving(channel: grpc.aio.Channel, service: str) -> None:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_of_an_unknown_service_is_not_found(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="nope.Nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def reflect(channel: grpc.aio.Channel, request: reflection_pb2.ServerReflectionRequest) -> object:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(iter([request]))
    replies = [reply async for reply in call]
    assert len(replies) == 1
    return replies[0]


async def test_reflection_lists_the_services(channel: grpc.aio.Channel) -> None:
    reply = await reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in reply.list_services_response.service}  # type: ignore[attr-defined]
    assert names == {
        "OpenAiRestApi.OpenAIServiceGrpc",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


async def test_reflection_describes_the_csharp_contract(channel: grpc.aio.Channel) -> None:
    """What grpcurl/Postman need to call the service without the .proto file."""
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="OpenAiRestApi.OpenAIServiceGrpc")
    reply = await reflect(channel, request)
    raw = reply.file_descriptor_response.file_descriptor_proto[0]  # type: ignore[attr-defined]
    file = descriptor_pb2.FileDescriptorProto.FromString(raw)
    assert file.package == "OpenAiRestApi"
    methods = {m.name: m.server_streaming for m in file.service[0].method}
    assert methods == {"Echo": False, "GetChatCompletions": False, "GetChatCompletionsStreaming": True}
