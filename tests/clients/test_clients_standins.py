"""The clients against tiny in-test servers that speak the gateway's contracts.

Stand-ins, not the gateway: they pin what the CLI relies on byte for byte — SSE events as the
REST app writes them, the C# sample's incremental JSON array, RFC 9457 problems, cut-off streams,
awkward chunk boundaries, and the gRPC trailing metadata (x-gateway-instance, x-prompt-tokens,
x-completion-tokens) that the gRPC host is to send. The real hosts are exercised in
test_clients_cli.py and test_clients_traffic.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest
from aiohttp import web

from clients.cli._grpc import GrpcClient
from clients.cli._model import Message, RequestFailed
from clients.cli._rest import RestClient
from protos import openai_pb2, openai_pb2_grpc

QUESTION = [Message("user", "Hi")]


async def _write_in_bits(response: web.StreamResponse, wire: str, size: int = 3) -> None:
    data = wire.encode()
    for i in range(0, len(data), size):  # cuts UTF-8 sequences too
        await response.write(data[i : i + size])


async def _stream(request: web.Request) -> web.StreamResponse:
    mode = request.query.get("tenant", "")
    response = web.StreamResponse(headers={"X-Gateway-Instance": "betaopenai"})
    if mode == "sse" and request.headers.get("Accept") == "text/event-stream":
        response.content_type = "text/event-stream"
        await response.prepare(request)
        wire = "".join(f"data: {json.dumps({'delta': p})}\n\n" for p in ("Ciao ", "é", " 🙂"))
        usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15, "instance": "alphaopenai"}
        await _write_in_bits(response, wire + f"event: usage\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n")
    elif mode == "cut":
        response.content_type = "application/json"
        await response.prepare(request)
        await _write_in_bits(response, '["Hel", "lo')
    else:
        response.content_type = "application/json"
        await response.prepare(request)
        await _write_in_bits(response, json.dumps(["Hel", "lo ", "wörld"]))
    await response.write_eof()
    return response


async def _chat(request: web.Request) -> web.Response:
    if request.query.get("tenant") == "busy":
        problem = {"title": "Too Many Requests", "status": 429, "detail": "Tenant 'busy' is over its limit."}
        return web.Response(
            status=429,
            text=json.dumps(problem),
            content_type="application/problem+json",
            headers={"Retry-After": "3"},
        )
    body = await request.json()
    headers = {
        "X-Gateway-Instance": "alphaopenai",
        "X-Prompt-Tokens": "9",
        "X-Completion-Tokens": "4",
        "X-Total-Tokens": "13",
    }
    return web.Response(text=f"you said {body[-1]['content']}", headers=headers)


@pytest.fixture
async def standin() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/openai/stream", _stream)
    app.router.add_post("/openai/chat", _chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_sse_stream_gives_text_as_it_comes_and_the_usage(standin: str) -> None:
    client = RestClient(standin, sse=True)
    seen: list[str] = []
    reply = await client.stream("sse", QUESTION, seen.append)
    await client.aclose()
    assert seen == ["Ciao ", "é", " 🙂"]
    assert reply.text == "Ciao é 🙂"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (12, 3, 15)
    assert reply.instance == "alphaopenai"


async def test_json_array_stream_and_instance_header(standin: str) -> None:
    client = RestClient(standin, sse=False)
    seen: list[str] = []
    reply = await client.stream("array", QUESTION, seen.append)
    await client.aclose()
    assert seen == ["Hel", "lo ", "wörld"]
    assert reply.instance == "betaopenai"
    assert not reply.usage.known


async def test_cut_off_stream_is_a_failure_not_a_short_answer(standin: str) -> None:
    client = RestClient(standin, sse=False)
    with pytest.raises(RequestFailed) as caught:
        await client.stream("cut", QUESTION, lambda _: None)
    await client.aclose()
    assert caught.value.status == "protocol-error"
    assert "cut off" in caught.value.detail


async def test_problem_details_become_one_line_with_retry_after(standin: str) -> None:
    client = RestClient(standin)
    with pytest.raises(RequestFailed) as caught:
        await client.chat("busy", QUESTION)
    reply = await client.chat("ok", QUESTION)
    await client.aclose()
    assert (
        caught.value.one_line()
        == "429: Too Many Requests — Tenant 'busy' is over its limit. (retry after 3s)"
    )
    assert reply.text == "you said Hi"
    assert (reply.instance, reply.usage.total_tokens) == ("alphaopenai", 13)


class _Servicer(openai_pb2_grpc.OpenAIServiceGrpcServicer):
    TRAILERS = (("x-gateway-instance", "BetaOpenAI"), ("x-prompt-tokens", "17"), ("x-completion-tokens", "5"))

    async def GetChatCompletions(self, request, context):  # type: ignore[no-untyped-def]
        if request.tenant == "busy":
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "Tenant 'busy' is over its limit.",
                trailing_metadata=(("retry-after", "4"),),
            )
        context.set_trailing_metadata(self.TRAILERS)
        return openai_pb2.GetChatCompletionsResponse(
            result=f"{request.tenant}: {request.conversation[-1].content}"
        )

    async def GetChatCompletionsStreaming(self, request, context):  # type: ignore[no-untyped-def]
        for piece in ("Hel", "lo"):
            await context.write(openai_pb2.GetChatCompletionsStreamingResponse(message=piece))
        context.set_trailing_metadata(self.TRAILERS)


@pytest.fixture
async def grpc_standin() -> AsyncIterator[str]:
    server = grpc.aio.server()
    openai_pb2_grpc.add_OpenAIServiceGrpcServicer_to_server(_Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


async def test_grpc_trailing_metadata_gives_instance_and_usage(grpc_standin: str) -> None:
    client = GrpcClient(grpc_standin)
    chat = await client.chat("acme", QUESTION)
    seen: list[str] = []
    streamed = await client.stream("acme", QUESTION, seen.append)
    with pytest.raises(RequestFailed) as caught:
        await client.chat("busy", QUESTION)
    await client.aclose()
    assert chat.text == "acme: Hi"
    for reply in (chat, streamed):
        assert reply.instance == "BetaOpenAI"
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
            17,
            5,
            22,
        )
    assert seen == ["Hel", "lo"]
    assert caught.value.one_line() == "RESOURCE_EXHAUSTED: Tenant 'busy' is over its limit. (retry after 4s)"
