"""RestClient against a tiny in-test aiohttp server that speaks the REST contract of design.md.

A stand-in, not the gateway: it pins the wire formats the CLI relies on (SSE events from the lead's
spec, the C# sample's incremental JSON array, RFC 9457 problems, cut-off streams) byte for byte,
including awkward chunk boundaries the real app rarely produces. The real app is exercised in
test_cli.py and test_traffic.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from clients.cli._model import Message, RequestFailed
from clients.cli._rest import RestClient

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
