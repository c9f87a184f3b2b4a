"""function_app.py inside the real Azure Functions Python runtime, driven by a stand-in host.

The worker is ``azure-functions-runtime`` (the version requirements.txt pins for Python 3.13) in
``.venv-func313``, behind a stand-in for the platform's proxy worker; the host side (gRPC
EventStream, init, worker indexing, load, invocation, HTTP proxying with ``x-ms-invocation-id``,
the key check) is tests/functions_runtime/funcrt_host.py. Upstream are two simulators over real
HTTP through the real openai SDK; answers are compared with the local uvicorn server's.
"""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
import pytest_asyncio
from funcrt_support import ROOT, app_settings, functions_host
from gateway_stack import serve_app, settings_from, settings_tree, start_simulator

pytestmark = pytest.mark.asyncio(loop_scope="module")

QUESTION = [{"role": "user", "content": "Tell me about Milan"}]
EXPECTED = {
    # name: (route, methods, authLevel) as the worker indexed them
    "echo": ("openai/echo", ("GET",), "FUNCTION"),
    "chat": ("openai/chat", ("POST",), "FUNCTION"),
    "stream": ("openai/stream", ("POST",), "FUNCTION"),
    "deployment_chat": ("openai/deployments/{deployment}/chat/completions", ("POST",), "FUNCTION"),
    "deployment_embeddings": ("openai/deployments/{deployment}/embeddings", ("POST",), "FUNCTION"),
    "v1_chat": ("openai/v1/chat/completions", ("POST",), "FUNCTION"),
    "v1_embeddings": ("openai/v1/embeddings", ("POST",), "FUNCTION"),
    "v1_responses": ("openai/v1/responses", ("POST",), "FUNCTION"),
    "responses": ("openai/responses", ("POST",), "FUNCTION"),
    "usage": ("admin/usage", ("GET",), "FUNCTION"),
    "metrics": ("metrics", ("GET",), "FUNCTION"),
    "healthz": ("healthz", ("GET",), "ANONYMOUS"),
}
# Beta (tenant fabrikam) is slow on purpose: 30-40 completion tokens at 40 ms each, >= 1.2 s.
SLOW = {"per_token_latency_ms": 40.0, "min_completion_tokens": 30, "max_completion_tokens": 40}


class Stack:
    def __init__(self, host, local_url, alpha, beta):
        self.host, self.alpha, self.beta = host, alpha, beta
        self.func = httpx.AsyncClient(base_url=host.url, timeout=30,
                                      headers={"x-functions-key": host.function_key})
        self.local = httpx.AsyncClient(base_url=local_url, timeout=30)

    async def both(self, method, url, **kwargs):
        """The same request to the Functions app and to the local server."""
        return (await self.func.request(method, url, **kwargs), await self.local.request(method, url, **kwargs))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(worker_python, rpc_protos, tmp_path_factory):
    alpha = await start_simulator("AlphaOpenAI")
    beta = await start_simulator("BetaOpenAI", **SLOW)
    tree = settings_tree({"AlphaOpenAI": alpha, "BetaOpenAI": beta}, Prometheus={"Enabled": True})
    log = tmp_path_factory.mktemp("funcrt") / "worker.log"
    try:
        async with functions_host(worker_python, rpc_protos, log, app_settings(tree)) as host, \
                serve_app(settings_from(tree, tmp_path_factory.mktemp("local"))) as local_url:
            stack = Stack(host, local_url, alpha, beta)
            yield stack
            await stack.func.aclose()
            await stack.local.aclose()
    finally:
        await alpha.stop()
        await beta.stop()


async def test_worker_indexes_exactly_the_expected_http_functions(stack):
    host = stack.host
    found = {name: (fn.route, fn.methods, fn.auth_level) for name, fn in host.functions.items()}
    assert found == EXPECTED
    for fn in host.functions.values():
        kinds = sorted((b["type"], b["direction"].upper()) for b in fn.bindings)
        assert kinds == [("http", "OUT"), ("httpTrigger", "IN")], fn.name
    # The FastAPI extension's HTTP server is what the host proxies to.
    assert host.worker_capabilities["HttpUri"].startswith("http://127.0.0.1:")
    assert host.worker_capabilities["RequiresRouteParameters"] == "true"
    assert any("Successfully indexed function app" in log.message for log in host.logs)


async def test_the_worker_is_the_runtime_that_requirements_pins_on_python_313(stack):
    pinned = re.search(r'^azure-functions-runtime==(\S+); python_version >= "3.13"$',
                       (ROOT / "requirements.txt").read_text(), flags=re.MULTILINE)
    assert pinned, "requirements.txt must pin azure-functions-runtime for Python 3.13+"
    metadata = stack.host.worker_metadata
    assert (metadata.runtime_name, metadata.runtime_version) == ("python", "3.13")
    assert metadata.worker_version == pinned.group(1)


async def test_echo_and_chat_answer_as_on_the_local_server(stack):
    func_echo, local_echo = await stack.both("GET", "/openai/echo", params={"tenant": " ConToso ", "value": "5"})
    func_chat, local_chat = await stack.both("POST", "/openai/chat?tenant=contoso", json=QUESTION)
    func_bad, local_bad = await stack.both("POST", "/openai/chat?tenant=contoso", json={"role": "user"})
    assert (func_echo.status_code, func_echo.text) == (200, "tenant: contoso value: 5") == \
        (local_echo.status_code, local_echo.text)
    assert func_echo.headers["content-type"] == local_echo.headers["content-type"]
    assert func_chat.status_code == 200 and func_chat.text and func_chat.text == local_chat.text
    assert func_chat.headers["x-gateway-instance"] == "AlphaOpenAI"
    assert func_chat.headers["x-total-tokens"] == local_chat.headers["x-total-tokens"]
    assert func_bad.status_code == local_bad.status_code == 400
    assert func_bad.headers["content-type"] == "application/problem+json"
    assert func_bad.json()["detail"] == local_bad.json()["detail"]
    outcomes = {(name, status) for name, _, status in await stack.host.settled()}
    assert {("echo", 1), ("chat", 1)} <= outcomes  # InvocationResponse: StatusResult.Success


async def test_both_stream_formats_answer_as_on_the_local_server(stack):
    chat = await stack.local.post("/openai/chat?tenant=contoso", json=QUESTION)
    func_json, local_json = await stack.both("POST", "/openai/stream?tenant=contoso", json=QUESTION)
    sse = {"Accept": "text/event-stream"}
    func_sse, local_sse = await stack.both("POST", "/openai/stream?tenant=contoso", json=QUESTION, headers=sse)
    assert func_json.status_code == 200
    assert func_json.headers["content-type"] == local_json.headers["content-type"]
    assert "".join(func_json.json()) == "".join(local_json.json()) == chat.text
    assert func_sse.headers["content-type"].startswith("text/event-stream")
    events = [e for e in func_sse.text.split("\n\n") if e]
    deltas = [json.loads(e[len("data: "):])["delta"] for e in events if e.startswith("data: {")]
    assert "".join(deltas) == chat.text
    assert events[-1] == "data: [DONE]"
    assert [e.split("\n")[0] for e in events if e.startswith("event:")] == \
        [e.split("\n")[0] for e in local_sse.text.split("\n\n") if e.startswith("event:")]


@pytest.mark.parametrize(("accept", "first_delta"), [("application/json", b'"'), ("text/event-stream", b'"delta"')])
async def test_stream_chunks_arrive_while_the_upstream_is_still_generating(stack, accept, first_delta):
    """Through the runtime's HTTP server the first delta arrives long before the end: the upstream
    (simulator Beta) needs >= 1.2 s and had not finished when the first delta came."""
    finished_before = stack.beta.stats.succeeded
    started = time.perf_counter()
    first = upstream_done_at_first = None
    received = b""
    async with stack.func.stream("POST", "/openai/stream?tenant=fabrikam", json=QUESTION,
                                 headers={"Accept": accept}) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_raw():
            received += chunk
            if first is None and first_delta in received:
                first = time.perf_counter() - started
                upstream_done_at_first = stack.beta.stats.succeeded - finished_before
    total = time.perf_counter() - started
    assert response.headers["x-gateway-instance"] == "BetaOpenAI"
    assert received.count(first_delta) > 3
    assert total >= 1.0  # the slow upstream really was slow
    assert upstream_done_at_first == 0  # the upstream had not finished when the first delta came
    assert first is not None and first < total / 2


async def test_healthz_needs_no_key_and_metrics_needs_the_function_key(stack):
    async with httpx.AsyncClient(base_url=stack.host.url, timeout=30) as anonymous:
        health = await anonymous.get("/healthz")
        no_key = await anonymous.get("/metrics")
        wrong_key = await anonymous.get("/metrics", params={"code": "not-the-key"})
        by_code = await anonymous.get("/metrics", params={"code": stack.host.function_key})
        echo_no_key = await anonymous.get("/openai/echo", params={"value": "1"})
    by_header = await stack.func.get("/metrics")
    assert (health.status_code, health.text) == (200, "ok")
    assert no_key.status_code == wrong_key.status_code == echo_no_key.status_code == 401
    assert by_code.status_code == by_header.status_code == 200
    assert by_code.headers["content-type"].startswith("text/plain")
    assert b"# TYPE openai_total_tokens_total counter" in by_code.content


async def test_the_openai_sdk_through_the_runtime_gets_the_compatible_api(stack):
    """The SDK as an existing app uses it (plus the function key the FUNCTION auth level asks for)."""
    import openai

    headers = {"x-functions-key": stack.host.function_key, "X-Tenant": "fabrikam"}
    client = openai.AsyncAzureOpenAI(azure_endpoint=stack.host.url, api_key="callers-key", api_version="2024-10-21",
                                     default_headers=headers, max_retries=0)
    v1 = openai.AsyncOpenAI(base_url=f"{stack.host.url}/openai/v1", api_key="callers-key",
                            default_headers=headers, max_retries=0)
    local = await stack.local.post("/openai/deployments/gpt-35-turbo-16k/chat/completions?api-version=2024-10-21",
                                   json={"messages": QUESTION}, headers={"X-Tenant": "fabrikam"})
    reply = await client.chat.completions.create(model="gpt-35-turbo-16k", messages=QUESTION)
    assert reply.choices[0].message.content == local.json()["choices"][0]["message"]["content"]
    started = time.perf_counter()
    first = None
    text = ""
    async for chunk in await v1.chat.completions.create(model="gpt-35-turbo-16k", messages=QUESTION, stream=True):
        assert chunk.usage is None  # the usage chunk the gateway asked for is kept back
        if chunk.choices and chunk.choices[0].delta.content:
            first = first if first is not None else time.perf_counter() - started
            text += chunk.choices[0].delta.content
    total = time.perf_counter() - started
    assert text == reply.choices[0].message.content
    assert first is not None and first < total / 2  # relayed as it arrives (Beta is slow on purpose)
    vectors = await client.embeddings.create(model="gpt-35-turbo-16k", input=["Milan", "Pisa"])
    assert [len(d.embedding) for d in vectors.data] == [1536, 1536]
    with pytest.raises(openai.NotFoundError, match="gpt-9"):
        await client.chat.completions.create(model="gpt-9", messages=QUESTION)
    await client.close()
    await v1.close()
