"""The gateway's own upstream adapter (aiohttp, no SDK) against the simulator."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from gateway_stack import DEPLOYMENT, start_simulator

from core import (
    ChatMessage,
    InvalidRequest,
    RateLimited,
    UpstreamError,
    UpstreamMisconfigured,
    UpstreamTimeout,
    UpstreamUnavailable,
    Usage,
)
from core.config import ChatCompletionsOptions, ServiceSettings
from core.upstream._chat import ChatUpstream
from core.upstream._session import SharedSession

HELLO = (ChatMessage("user", "Hello there"),)


def chat(settings: ServiceSettings, options: ChatCompletionsOptions | None = None, **kw: object) -> ChatUpstream:
    return ChatUpstream("AlphaOpenAI", settings, options or ChatCompletionsOptions(), SharedSession(), **kw)  # type: ignore[arg-type]


def service(url: str, **fields: object) -> ServiceSettings:
    values: dict[str, object] = {"endpoint": url, "api_key": "sim-key-alpha", "deployment": DEPLOYMENT,
                                 "max_retries": 0, "max_response_tokens": 50}
    values.update(fields)
    return ServiceSettings.model_validate(values)


@pytest.fixture
async def alpha():
    sim = await start_simulator("AlphaOpenAI")
    yield sim
    await sim.stop()


async def test_entra_type_sends_a_bearer_token_from_the_provider(alpha):
    """Entra ID is unreachable here: a stand-in token provider replaces azure-identity's
    ``get_bearer_token_provider``; what is checked is that the adapter sends its token, not a key."""
    asked: list[int] = []

    async def provider() -> str:
        asked.append(1)
        return "entra-token-stand-in"

    upstream = chat(service(alpha.url, type="azuread", api_key=""), token_provider=provider)
    reply = await upstream.complete(HELLO)
    await upstream.aclose()
    assert reply.text and reply.usage is not None and reply.usage.completion_tokens <= 50
    assert asked and alpha.stats.succeeded == 1


async def test_wrong_key_is_an_upstream_error_that_does_not_echo_the_key(alpha):
    upstream = chat(service(alpha.url, api_key="wrong-key-123"))
    with pytest.raises(UpstreamError) as caught:
        await upstream.complete(HELLO)
    await upstream.aclose()
    assert "rejected the gateway's credentials" in caught.value.detail
    assert "wrong-key-123" not in caught.value.detail


async def test_429_carries_retry_after_ms_and_503_is_unavailable(alpha):
    upstream = chat(service(alpha.url))
    alpha.set_fault(status=429, retry_after_ms=1500, count=1)
    with pytest.raises(RateLimited) as limited:
        await upstream.complete(HELLO)
    alpha.set_fault(status=503, count=1)
    with pytest.raises(UpstreamUnavailable):
        await upstream.complete(HELLO)
    await upstream.aclose()
    assert limited.value.retry_after == 1.5


async def test_one_attempt_whatever_max_retries_the_gateway_owns_retries(alpha):
    upstream = chat(service(alpha.url, max_retries=3))
    alpha.set_fault(status=429, retry_after_ms=50, count=2)
    with pytest.raises(RateLimited):
        await upstream.complete(HELLO)
    await upstream.aclose()
    assert alpha.stats.status_counts.get("429") == 1 and alpha.stats.succeeded == 0


@pytest.mark.parametrize(("style", "expected"), [("ms", 2.5), ("seconds", 3.0), ("both", 2.5),
                                                 ("reset", 2.5), ("date", 3.0)])
async def test_429_cooldown_from_every_header_style(alpha, style, expected):
    upstream = chat(service(alpha.url))
    alpha.set_fault(status=429, retry_after_ms=2500, retry_style=style, count=1)
    with pytest.raises(RateLimited) as limited:
        await upstream.complete(HELLO)
    await upstream.aclose()
    assert limited.value.retry_after is not None
    assert expected - 1.1 <= limited.value.retry_after <= expected  # an HTTP date has 1 s resolution


async def test_wrong_key_and_missing_deployment_name_the_setting(alpha):
    bad_key = chat(service(alpha.url, api_key="wrong-key-123"))
    no_deployment = chat(service(alpha.url, deployment="nope"))
    with pytest.raises(UpstreamMisconfigured) as key:
        await bad_key.complete(HELLO)
    with pytest.raises(UpstreamMisconfigured) as deployment:
        await no_deployment.complete(HELLO)
    await bad_key.aclose()
    await no_deployment.aclose()
    assert key.value.setting == "AzureOpenAI:Services:AlphaOpenAI:ApiKey" and key.value.instance_fault
    assert deployment.value.setting == "AzureOpenAI:Services:AlphaOpenAI:Deployment"


async def test_400_about_a_gateway_setting_names_it_and_400_about_the_conversation_stays_400(alpha):
    five_stops = ChatCompletionsOptions(stop_sequences=("a1", "b2", "c3", "d4", "e5"))
    upstream = chat(service(alpha.url), five_stops)
    with pytest.raises(UpstreamMisconfigured) as setting:
        await upstream.complete(HELLO)
    await upstream.aclose()
    assert setting.value.setting == "ChatCompletionsOptions:StopSequences"
    assert not setting.value.instance_fault  # shared by every instance: nobody leaves rotation
    plain = chat(service(alpha.url))
    with pytest.raises(InvalidRequest):
        await plain.complete((ChatMessage("caller-made-up-role", "x"),))  # type: ignore[arg-type]
    await plain.aclose()


async def test_a_stalled_stream_ends_in_a_timeout_not_a_hang(alpha):
    upstream = chat(service(alpha.url, timeout_seconds=0.3))
    alpha.set_fault(stall_ms=3000, stall_after_chunks=2, count=1)
    stream = await upstream.open_stream(HELLO)
    with pytest.raises(UpstreamTimeout) as stalled:
        async for _ in stream:
            pass
    await stream.aclose()
    await upstream.aclose()
    assert "stalled" in stalled.value.detail and "TimeoutSeconds" in stalled.value.detail


async def test_chat_options_reach_the_upstream_request(alpha):
    options = ChatCompletionsOptions(temperature=0.1, stop_sequences=("zzz",))
    upstream = chat(service(alpha.url, max_response_tokens=5), options)
    reply = await upstream.complete(HELLO)
    await upstream.aclose()
    assert reply.usage is not None and reply.usage.completion_tokens <= 5


async def test_a_stream_yields_the_text_finish_reason_and_the_usage_the_instance_counted(alpha):
    upstream = chat(service(alpha.url))
    stream = await upstream.open_stream(HELLO)
    events = [event async for event in stream]
    await stream.aclose()
    await upstream.aclose()
    reported = alpha.stats.reported
    usage = [e.usage for e in events if e.usage is not None]
    assert "".join(e.text for e in events) and [e.finish_reason for e in events if e.finish_reason] == ["stop"]
    assert {e.model for e in events if e.text} == {DEPLOYMENT}
    assert [(u.prompt_tokens, u.completion_tokens) for u in usage] == [(reported.prompt_tokens,
                                                                         reported.completion_tokens)]


async def test_unreachable_slow_and_dropped_instances(alpha):
    refused = chat(service("http://127.0.0.1:9/"))
    with pytest.raises(UpstreamUnavailable, match=r"unreachable \(check AzureOpenAI:Services:AlphaOpenAI:Endpoint\)"):
        await refused.complete(HELLO)
    await refused.aclose()
    upstream = chat(service(alpha.url, timeout_seconds=0.3))
    alpha.set_fault(delay_ms=1500, count=1)
    with pytest.raises(UpstreamTimeout, match="AzureOpenAI:Services:AlphaOpenAI:TimeoutSeconds"):
        await upstream.complete(HELLO)
    alpha.set_fault(drop=True, drop_after_chunks=2, count=1)
    stream = await upstream.open_stream(HELLO)
    with pytest.raises(UpstreamUnavailable, match="dropped the stream"):
        async for _ in stream:
            pass
    await stream.aclose()
    await upstream.aclose()


async def test_closing_an_unfinished_stream_stops_the_generation():
    sim = await start_simulator("AlphaOpenAI", per_token_latency_ms=20)
    upstream = chat(service(sim.url))
    stream = await upstream.open_stream(HELLO)
    async for event in stream:
        if event.text:
            break
    await stream.aclose()
    for _ in range(100):  # the simulator notices at its next write
        if sim.stats.aborted:
            break
        await asyncio.sleep(0.05)
    await upstream.aclose()
    await sim.stop()
    assert sim.stats.aborted == 1 and sim.stats.succeeded == 0


Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def fake() -> AsyncIterator[tuple[str, list[tuple[web.Request, bytes, int]], list[Answer]]]:
    """A stand-in instance (aiohttp.web on 127.0.0.1) for answers the simulator never gives; records
    each request, its body and the client's port."""
    seen: list[tuple[web.Request, bytes, int]] = []
    answers: list[Answer] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.append((request, await request.read(), peer[1] if peer else 0))
        return await answers[0](request)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/", seen, answers
    await runner.cleanup()


def sse(*events: bytes) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
            await asyncio.sleep(0.02)  # each piece on its own: the body's end comes after [DONE]
        return response

    return answer


async def test_the_request_carries_the_settings_and_finished_streams_reuse_one_connection(fake):
    url, seen, answers = fake
    answers.append(sse(b'data: {"model":"m1","choices":[{"delta":{"content":"Hi"}}]}\r\n\r\n',
                       b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: {"choices":[],',
                       b'"usage":{"prompt_tokens":4,"completion_tokens":1}}\n\ndata: [DONE]\n\n'))
    options = ChatCompletionsOptions(temperature=0.2, nucleus_sampling_factor=0.9, stop_sequences=("zz",))
    upstream = chat(service(url, deployment="dep/1", version="2024-10-21", max_response_tokens=7), options)
    for _ in range(2):
        stream = await upstream.open_stream(HELLO)
        events = [event async for event in stream]
        await stream.aclose()
    await upstream.aclose()
    request, body, _ = seen[0]
    assert request.path_qs == "/openai/deployments/dep%2F1/chat/completions?api-version=2024-10-21"
    assert request.headers["api-key"] == "sim-key-alpha" and "traceparent" not in request.headers
    assert orjson.loads(body) == {"messages": [{"role": "user", "content": "Hello there"}], "stream": True,
                                  "stream_options": {"include_usage": True}, "model": "dep/1", "max_tokens": 7,
                                  "temperature": 0.2, "top_p": 0.9, "stop": ["zz"]}
    assert [(e.text, e.model, e.finish_reason) for e in events if e.usage is None] == [("Hi", "m1", ""),
                                                                                       ("", "", "stop")]
    assert [e.usage for e in events if e.usage] == [Usage(4, 1)]
    assert seen[0][2] == seen[1][2]  # one connection, back in the pool after the first stream


async def test_error_events_and_unreadable_answers_are_upstream_errors(fake):
    url, _, answers = fake
    upstream = chat(service(url))
    answers.append(sse(b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n',
                       b'data: {"error":{"message":"server_error: try again"}}\n\n'))
    stream = await upstream.open_stream(HELLO)
    with pytest.raises(UpstreamError, match="failed mid-stream: server_error: try again"):
        async for _ in stream:
            pass
    await stream.aclose()

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>gateway timeout</html>", content_type="text/html")

    answers[0] = html
    with pytest.raises(UpstreamError, match="unreadable answer"):
        await upstream.complete(HELLO)

    async def filtered(request: web.Request) -> web.Response:  # a content filter: no choices, no usage
        return web.json_response({"model": "m", "choices": []})

    answers[0] = filtered
    reply = await upstream.complete(HELLO)
    await upstream.aclose()
    assert (reply.text, reply.usage, reply.model) == ("", None, "m")


def test_the_gateway_process_never_loads_the_openai_sdk(tmp_path):
    """The hosts built and a chat and a stream served: neither ``openai`` nor its transport loaded
    (a fresh interpreter: this test process imports the SDK for its clients)."""
    script = tmp_path / "serve.py"
    script.write_text(SERVE_ONCE)
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["chat"] and result["stream"]
    assert result["sdk"] == []


ROOT = Path(__file__).resolve().parents[3]
SERVE_ONCE = """
import asyncio, json, sys

import grpc_host, http_api  # noqa: F401  (both hosts, as they load)
from gateway_stack import settings_tree, start_simulator

from core import ChatMessage, build_gateway, load_settings


async def main():
    sim = await start_simulator("AlphaOpenAI")
    tree = {**settings_tree({"AlphaOpenAI": sim}), "TenantAzureOpenAIMappings": {"contoso": "AlphaOpenAI"}}
    gateway = build_gateway(_settings(tree))
    hello = (ChatMessage("user", "Hello"),)
    chat = await gateway.chat("contoso", hello)
    stream = await gateway.open_stream("contoso", hello)
    parts = [part async for part in stream]
    await stream.aclose()
    await gateway.aclose()
    await sim.stop()
    sdk = sorted(m for m in sys.modules if m.split(".")[0] in {"openai", "httpx2"})
    print(json.dumps({"chat": chat.text, "stream": "".join(parts), "sdk": sdk}))


def _settings(tree):
    import pathlib, tempfile
    path = pathlib.Path(tempfile.mkdtemp()) / "appsettings.json"
    path.write_text(json.dumps(tree))
    return load_settings(json_path=path, environ={})


asyncio.run(main())
"""
