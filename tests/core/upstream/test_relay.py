"""The aiohttp relay against a real HTTP server (aiohttp.web on 127.0.0.1) that sends SSE in awkward
pieces and Azure's error answers; no mocks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import orjson
import pytest
from aiohttp import web

from core import RateLimited, UpstreamError, UpstreamMisconfigured, UpstreamTimeout, UpstreamUnavailable
from core.config import ServiceSettings
from core.upstream._relay import AiohttpRelay, json_usage
from core.upstream._session import SharedSession, retry_after_seconds

EVENTS = [
    b'data: {"choices":[],"prompt_filter_results":[]}\n\n',
    b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}],"usage":null}\n\n',
    b'data: {"choices":[{"index":0,"delta":{"content":"lo"}}],"usage":null}\n\n',
    b'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,'
    b'"completion_tokens_details":{"reasoning_tokens":0}}}\n\n',
    b"data: [DONE]\n\n",
]


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, list[web.Request], dict[str, Callable[[], web.StreamResponse]]]]:
    seen: list[web.Request] = []
    answers: dict[str, Callable[[], web.StreamResponse]] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        await request.read()
        if "stream" in answers:
            response = web.StreamResponse(headers={"content-type": "text/event-stream", "x-request-id": "r1",
                                                   "set-cookie": "secret=1"})
            await response.prepare(request)
            raw = b"".join(EVENTS)
            if "crlf" in answers:
                raw = raw.replace(b"\n", b"\r\n")
            for cut in range(0, len(raw), 37):  # pieces that split events, lines and the usage object
                await response.write(raw[cut:cut + 37])
                await asyncio.sleep(0)
            return response
        return answers["json"]()

    app = web.Application()
    app.router.add_post("/openai/deployments/{d}/{op:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/", seen, answers
    await runner.cleanup()


def relay(url: str, **settings: object) -> AiohttpRelay:
    values: dict[str, object] = {"endpoint": url, "api_key": "instance-key", "deployment": "d", "max_retries": 0}
    service = ServiceSettings(**{**values, **settings})  # type: ignore[arg-type]
    return AiohttpRelay("Alpha", service, SharedSession())


async def test_stream_relayed_in_pieces_loses_only_the_usage_event_and_reads_its_usage(upstream) -> None:
    url, seen, answers = upstream
    answers["stream"] = lambda: web.Response()
    client = relay(url)
    stream = await client.open_stream("dep-1", "chat/completions", b'{"stream":true}', api_version=None,
                                      keep_usage_event=False)
    body = b"".join([part async for part in stream])
    await stream.aclose()
    assert body == b"".join(EVENTS[:3] + EVENTS[4:])
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (9, 2)  # type: ignore[union-attr]
    assert stream.texts() == "Hello"
    assert {k.lower(): v for k, v in stream.headers} == {"content-type": "text/event-stream",
                                                          "x-request-id": "r1"}  # no cookie
    request = seen[0]
    assert request.headers["api-key"] == "instance-key" and "Authorization" not in request.headers
    assert request.path_qs == "/openai/deployments/dep-1/chat/completions?api-version=2024-06-01"
    kept = await client.open_stream("d", "chat/completions", b"{}", api_version="2024-10-21",
                                    keep_usage_event=True)
    assert b"".join([part async for part in kept]) == b"".join(EVENTS)
    await kept.aclose()
    await client.aclose()


async def test_azure_errors_become_the_gateways_with_the_answer_kept(upstream) -> None:
    url, _, answers = upstream
    client = relay(url)
    cases = [
        (web.Response(status=429, body=b'{"error":{"code":"429"}}', headers={"retry-after-ms": "1500"}),
         RateLimited, 1.5),
        (web.Response(status=503, body=b"{}", headers={"retry-after": "2"}), UpstreamUnavailable, 2.0),
        (web.Response(status=500, body=b"{}"), UpstreamError, None),
    ]
    for response, kind, wait in cases:
        answers["json"] = lambda response=response: response
        with pytest.raises(kind) as caught:
            await client.post("d", "embeddings", b"{}", api_version=None)
        assert caught.value.retry_after == wait
        assert caught.value.upstream_response is not None
        assert caught.value.upstream_response.status == response.status
    answers["json"] = lambda: web.Response(status=401, body=b'{"error":{"code":"401"}}')
    with pytest.raises(UpstreamMisconfigured, match="credentials") as denied:
        await client.post("d", "embeddings", b"{}", api_version=None)
    assert denied.value.upstream_response is None  # never shown: the caller's key was not the problem
    answers["json"] = lambda: web.Response(status=400, body=b'{"error":{"message":"bad"}}')
    reply = await client.post("d", "embeddings", b"{}", api_version=None)
    assert (reply.status, reply.usage) == (400, None)  # the caller's own mistake: passed through
    await client.aclose()


async def test_one_attempt_only_the_gateway_retries(upstream) -> None:
    url, seen, answers = upstream
    answers["json"] = lambda: web.Response(status=429, body=b"{}", headers={"retry-after-ms": "20"})
    client = relay(url, max_retries=3)
    with pytest.raises(RateLimited):
        await client.post("d", "embeddings", b"{}", api_version=None)
    assert len(seen) == 1  # MaxRetries is the failover's (core._failover), never the adapter's
    await client.aclose()


async def test_unreachable_and_slow_instances() -> None:
    unreachable = relay("http://127.0.0.1:9/")
    with pytest.raises(UpstreamUnavailable, match="unreachable"):
        await unreachable.post("d", "embeddings", b"{}", api_version=None)
    await unreachable.aclose()

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response()

    app = web.Application()
    app.router.add_post("/{tail:.*}", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    client = relay(f"http://127.0.0.1:{runner.addresses[0][1]}/", timeout_seconds=0.2)
    with pytest.raises(UpstreamTimeout):
        await client.post("d", "embeddings", b"{}", api_version=None)
    await client.aclose()
    await runner.cleanup()


async def test_crlf_framed_events_whole_in_one_piece(upstream) -> None:
    url, _, answers = upstream
    answers["stream"] = answers["crlf"] = lambda: web.Response()
    client = relay(url)
    stream = await client.open_stream("d", "chat/completions", b"{}", api_version=None,
                                      keep_usage_event=False)
    body = b"".join([part async for part in stream])
    await stream.aclose()
    assert body == b"".join(EVENTS[:3] + EVENTS[4:]).replace(b"\n", b"\r\n")
    assert stream.usage is not None and stream.usage.total_tokens == 11
    await client.aclose()


def test_usage_is_read_from_its_own_object_even_with_nested_details() -> None:
    body = orjson.dumps({"data": [{"embedding": [0.1] * 50}], "choices": [{"message": {"content": '"usage": {'}}],
                         "usage": {"prompt_tokens": 7, "completion_tokens": 3,
                                   "prompt_tokens_details": {"cached_tokens": 0}, "total_tokens": 10}})
    usage = json_usage(body)
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (7, 3)
    assert json_usage(b'{"choices":[]}') is None


def test_retry_after_in_each_form() -> None:
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    date = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after_seconds({"retry-after": date}) or 0) <= 30
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


async def test_an_azuread_instance_sends_a_fresh_entra_bearer_and_no_key(upstream) -> None:
    url, seen, answers = upstream
    answers["json"] = lambda: web.Response(body=b'{"usage":{"prompt_tokens":1,"total_tokens":1}}')
    tokens = iter(["entra-1", "entra-2"])

    async def provider() -> str:  # stands in for azure-identity's bearer token provider (no Entra here)
        return next(tokens)

    service = ServiceSettings(endpoint=url, type="azuread", deployment="d", max_retries=0)
    client = AiohttpRelay("Alpha", service, SharedSession(), token_provider=provider)
    for _ in range(2):
        await client.post("d", "embeddings", b"{}", api_version=None)
    assert [r.headers["Authorization"] for r in seen] == ["Bearer entra-1", "Bearer entra-2"]
    assert all("api-key" not in r.headers for r in seen)
    await client.aclose()
