"""The gateway's gRPC API (`OpenAiRestApi.OpenAIServiceGrpc`) through grpc.aio."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import grpc

from clients.cli._model import DeltaSink, Message, Reply, RequestFailed, parse_int, usage_from

_OK = "OK"


def _stubs() -> tuple[ModuleType, ModuleType]:
    """Import the generated stubs lazily, so REST works on a checkout without them."""
    try:
        pb2 = importlib.import_module("protos.openai_pb2")
        pb2_grpc = importlib.import_module("protos.openai_pb2_grpc")
    except ImportError as exc:
        raise RequestFailed(
            "setup-error", f"gRPC stubs missing ({exc}); generate them with scripts/gen-protos.sh"
        ) from None
    return pb2, pb2_grpc


class GrpcClient:
    """`GatewayClient` over a plaintext HTTP/2 channel, as in the local run and in-cluster calls."""

    transport = "grpc"

    def __init__(self, target: str, *, token: str | None = None, timeout: float = 120.0) -> None:
        self._pb2, pb2_grpc = _stubs()
        self._target = target
        self._timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = pb2_grpc.OpenAIServiceGrpcStub(self._channel)

    async def aclose(self) -> None:
        await self._channel.close()

    async def echo(self, tenant: str | None, value: int) -> Reply:
        request = self._pb2.EchoRequest(tenant=tenant or "", value=value)
        call = self._stub.Echo(request, metadata=self._metadata, timeout=self._timeout)
        try:
            response = await call
        except grpc.aio.AioRpcError as exc:
            raise self._failure(exc) from None
        return Reply(response.message, _OK)

    async def chat(self, tenant: str | None, messages: list[Message]) -> Reply:
        call = self._stub.GetChatCompletions(
            self._request(tenant, messages), metadata=self._metadata, timeout=self._timeout
        )
        try:
            response = await call
            metadata = await _all_metadata(call)
        except grpc.aio.AioRpcError as exc:
            raise self._failure(exc) from None
        return _reply(response.result, metadata)

    async def stream(self, tenant: str | None, messages: list[Message], on_delta: DeltaSink) -> Reply:
        call = self._stub.GetChatCompletionsStreaming(
            self._request(tenant, messages), metadata=self._metadata, timeout=self._timeout
        )
        parts: list[str] = []
        try:
            async for item in call:
                parts.append(item.message)
                on_delta(item.message)
            metadata = await _all_metadata(call)
        except grpc.aio.AioRpcError as exc:
            raise self._failure(exc) from None
        finally:
            call.cancel()
        return _reply("".join(parts), metadata)

    def _request(self, tenant: str | None, messages: list[Message]) -> Any:
        conversation = [self._pb2.GrpcMessage(role=m.role, content=m.content) for m in messages]
        return self._pb2.GetChatCompletionsRequest(tenant=tenant or "", conversation=conversation)

    def _failure(self, exc: grpc.aio.AioRpcError) -> RequestFailed:
        code = exc.code()
        metadata = _pairs(exc.trailing_metadata())
        retry = metadata.get("retry-after")
        retry_after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
        details = exc.details() or code.name
        if code == grpc.StatusCode.UNAVAILABLE and _is_connect_failure(details):
            return RequestFailed(
                "connect-error", f"cannot connect to {self._target} — is the gRPC host running?"
            )
        return RequestFailed(code.name, " ".join(str(details).split()), retry_after)


def _is_connect_failure(details: str) -> bool:
    lowered = details.lower()
    return "failed to connect to all addresses" in lowered or "dns resolution failed" in lowered


async def _all_metadata(call: Any) -> dict[str, str]:
    """Initial and trailing metadata merged (trailing wins)."""
    merged = _pairs(await call.initial_metadata())
    merged.update(_pairs(await call.trailing_metadata()))
    return merged


def _pairs(metadata: Any) -> dict[str, str]:
    if not metadata:
        return {}
    pairs: dict[str, str] = {}
    for key, value in metadata:
        if isinstance(value, bytes):
            continue
        pairs[str(key).lower()] = str(value)
    return pairs


def _reply(text: str, metadata: dict[str, str]) -> Reply:
    usage = usage_from(
        parse_int(metadata.get("x-prompt-tokens")),
        parse_int(metadata.get("x-completion-tokens")),
        parse_int(metadata.get("x-total-tokens")),
    )
    return Reply(text, _OK, metadata.get("x-gateway-instance"), usage)
