"""The Functions app as the host sees it, and its handlers called the way the worker calls them.

No worker runs here: the test builds the FastAPI ``Request`` the FastAPI extension would pass (an
ASGI scope plus body) and awaits the user function, against real simulators over real HTTP. This is
the Python 3.11 line of requirements.txt; tests/functions_runtime runs the same app inside the real
Python 3.13 runtime (azure-functions-runtime) behind a stand-in host.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import azure.functions as func
import pytest
from fastapi import Request
from gateway_stack import settings_tree, start_simulator

from core import ConfigurationError

EXPECTED = {
    # name: (route, methods, auth level)
    "echo": ("openai/echo", ["GET"], func.AuthLevel.FUNCTION),
    "chat": ("openai/chat", ["POST"], func.AuthLevel.FUNCTION),
    "stream": ("openai/stream", ["POST"], func.AuthLevel.FUNCTION),
    "deployment_chat": ("openai/deployments/{deployment}/chat/completions", ["POST"], func.AuthLevel.FUNCTION),
    "deployment_embeddings": ("openai/deployments/{deployment}/embeddings", ["POST"], func.AuthLevel.FUNCTION),
    "v1_chat": ("openai/v1/chat/completions", ["POST"], func.AuthLevel.FUNCTION),
    "v1_embeddings": ("openai/v1/embeddings", ["POST"], func.AuthLevel.FUNCTION),
    "v1_responses": ("openai/v1/responses", ["POST"], func.AuthLevel.FUNCTION),
    "responses": ("openai/responses", ["POST"], func.AuthLevel.FUNCTION),
    "usage": ("admin/usage", ["GET"], func.AuthLevel.FUNCTION),
    "metrics": ("metrics", ["GET"], func.AuthLevel.FUNCTION),
    "healthz": ("healthz", ["GET"], func.AuthLevel.ANONYMOUS),
}


def make_request(method: str, path: str, query: str = "", body: bytes = b"",
                 headers: dict[str, str] | None = None) -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": method, "path": path, "query_string": query.encode(),
             "headers": raw_headers, "scheme": "https", "server": ("func.local", 443),
             "http_version": "1.1", "root_path": ""}
    return Request(scope, receive)


@pytest.fixture
async def function_app(tmp_path, monkeypatch):
    alpha = await start_simulator("AlphaOpenAI")
    beta = await start_simulator("BetaOpenAI")
    config = tmp_path / "appsettings.json"
    config.write_text(json.dumps(settings_tree({"AlphaOpenAI": alpha, "BetaOpenAI": beta})))
    monkeypatch.setenv("GATEWAY_CONFIG", str(config))
    module = importlib.reload(importlib.import_module("function_app"))
    yield module
    gateway = await module.handlers._provider()
    await gateway.aclose()
    await alpha.stop()
    await beta.stop()


def test_host_indexes_exactly_the_expected_http_functions():
    module = importlib.import_module("function_app")
    found = {}
    for function in module.app.get_functions():
        (trigger,) = [b for b in function.get_bindings() if b.type == "httpTrigger"]
        found[function.get_function_name()] = (
            trigger.route, [str(m.value) for m in trigger.methods], trigger.auth_level)
    assert found == EXPECTED


def test_bad_app_setting_fails_the_start_naming_the_key(monkeypatch):
    monkeypatch.setenv("AzureOpenAI__Services__AlphaOpenAI__MaxRetries", "lots")
    with pytest.raises(ConfigurationError, match="AzureOpenAI:Services:AlphaOpenAI:MaxRetries"):
        importlib.reload(importlib.import_module("function_app"))
    monkeypatch.delenv("AzureOpenAI__Services__AlphaOpenAI__MaxRetries")
    importlib.reload(importlib.import_module("function_app"))


def test_host_json_routes_without_the_api_prefix():
    with open("host.json", encoding="utf-8") as fh:
        host = json.load(fh)
    assert host["extensions"]["http"]["routePrefix"] == ""


def test_local_settings_example_enables_init_indexing():
    """``func start`` on Python 3.11/3.12 runs Core Tools' own worker: without init indexing the
    FastAPI extension's HTTP calls hang there (3.13's runtime always indexes at init)."""
    with open("local.settings.json.example", encoding="utf-8") as fh:
        values = json.load(fh)["Values"]
    assert values["PYTHON_ENABLE_INIT_INDEXING"] == "1"
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"


async def test_handlers_answer_as_the_worker_calls_them(function_app):
    functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
    echo = await functions["echo"](make_request("GET", "/openai/echo", "tenant=Contoso&value=5"))
    chat = await functions["chat"](make_request(
        "POST", "/openai/chat", "tenant=contoso", b'[{"role":"user","content":"hi there"}]',
        {"content-type": "application/json"}))
    bad = await functions["chat"](make_request(
        "POST", "/openai/chat", "tenant=contoso", b"{}", {"content-type": "application/json"}))
    stream = await functions["stream"](make_request(
        "POST", "/openai/stream", "", b'[{"role":"user","content":"hi there"}]',
        {"content-type": "application/json", "x-tenant": "fabrikam"}))
    parts = [part async for part in stream.body_iterator]
    metrics = await functions["metrics"](make_request("GET", "/metrics"))
    assert (echo.status_code, echo.body) == (200, b"tenant: contoso value: 5")
    assert chat.status_code == 200 and chat.headers["x-gateway-instance"] == "AlphaOpenAI"
    assert chat.body.decode().strip()
    assert bad.status_code == 400 and bad.media_type == "application/problem+json"
    assert stream.status_code == 200 and stream.headers["x-gateway-instance"] == "BetaOpenAI"
    assert "".join(json.loads(b"".join(p if isinstance(p, bytes) else p.encode() for p in parts)))
    assert b'openai_total_tokens_total{method_name="chat",openai_name="alphaopenai",tenant_name="contoso"}' \
        in metrics.body


async def test_functions_app_with_tenant_keys_takes_the_tenant_from_the_api_key(tmp_path, monkeypatch):
    """App settings ``Auth__Mode=keys`` + ``Auth__Keys__contoso``: the api-key header (what Azure
    OpenAI clients send) decides the tenant; no key is 401, another tenant's name is 403."""
    from auth_support import new_tenant_key

    key, hashed = new_tenant_key("contoso")
    alpha = await start_simulator("AlphaOpenAI")
    beta = await start_simulator("BetaOpenAI")
    config = tmp_path / "appsettings.json"
    config.write_text(json.dumps(settings_tree({"AlphaOpenAI": alpha, "BetaOpenAI": beta})))
    monkeypatch.setenv("GATEWAY_CONFIG", str(config))
    monkeypatch.setenv("Auth__Mode", "keys")
    monkeypatch.setenv("Auth__Keys__contoso", hashed)
    module = importlib.reload(importlib.import_module("function_app"))
    functions = {f.get_function_name(): f.get_user_function() for f in module.app.get_functions()}
    body, json_type = b'[{"role":"user","content":"hi there"}]', {"content-type": "application/json"}
    try:
        served = await functions["chat"](make_request("POST", "/openai/chat", "", body, {**json_type, "api-key": key}))
        anonymous = await functions["chat"](make_request("POST", "/openai/chat", "tenant=contoso", body, json_type))
        other = await functions["echo"](make_request("GET", "/openai/echo", "tenant=fabrikam&value=1",
                                                     headers={"api-key": key}))
    finally:
        await (await module.handlers._provider()).aclose()
        await alpha.stop()
        await beta.stop()
        monkeypatch.undo()
        importlib.reload(module)  # leave the module as the other tests expect it (Auth:Mode none)
    assert served.status_code == 200 and served.headers["x-gateway-instance"] == "AlphaOpenAI"
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert other.status_code == 403 and other.media_type == "application/problem+json"
    assert key.encode() not in anonymous.body + other.body


async def test_compatible_api_handlers_answer_as_the_worker_calls_them(function_app):
    functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
    chat = await functions["deployment_chat"](make_request(
        "POST", "/openai/deployments/gpt-35-turbo-16k/chat/completions", "api-version=2024-10-21",
        b'{"messages":[{"role":"user","content":"hi"}]}', {"content-type": "application/json", "x-tenant": "contoso"}))
    stream = await functions["v1_chat"](make_request(
        "POST", "/openai/v1/chat/completions", "",
        b'{"model":"gpt-35-turbo-16k","stream":true,"messages":[{"role":"user","content":"hi"}]}',
        {"content-type": "application/json", "x-tenant": "fabrikam"}))
    events = b"".join([p if isinstance(p, bytes) else p.encode() async for p in stream.body_iterator])
    unknown = await functions["v1_embeddings"](make_request(
        "POST", "/openai/v1/embeddings", "", b'{"model":"nope","input":"x"}', {"x-tenant": "contoso"}))
    assert chat.status_code == 200 and json.loads(chat.body)["choices"][0]["message"]["content"]
    assert chat.headers["x-gateway-instance"] == "AlphaOpenAI"
    assert stream.status_code == 200 and stream.headers["x-gateway-instance"] == "BetaOpenAI"
    assert events.endswith(b"data: [DONE]\n\n") and b'"usage":{' not in events  # usage chunk kept back
    assert unknown.status_code == 404 and "'nope'" in json.loads(unknown.body)["error"]["message"]
