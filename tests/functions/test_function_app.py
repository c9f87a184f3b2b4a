"""The Functions app as the host sees it, and its handlers called the way the worker calls them.

Azure Functions Core Tools cannot be installed here, so the worker is not running: the test builds
the FastAPI ``Request`` the FastAPI extension would pass (an ASGI scope plus body) and awaits the
user function, against real simulators over real HTTP.
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
