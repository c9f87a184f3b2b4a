"""The hot routes' own dispatch (http_api/_hot.py) answers exactly as FastAPI's router did.

Two REST apps on the same settings and simulator, each on uvicorn over real HTTP: the default
(hot routes dispatched before FastAPI) and ``create_app(hot_routes=False)`` (every request through
FastAPI). The same requests, good and bad, to both: the same status, content type, error bodies,
header names and request metrics; the OpenAPI document still lists the hot routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from gateway_stack import DEPLOYMENT, settings_from, settings_tree, start_simulator

from http_api import create_app
from localrun.ports import free_port

BODY = [{"role": "user", "content": "Tell me about Milan"}]
AZURE = {"messages": BODY, "max_tokens": 20}
COMPAT = f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2024-10-21"
JSON = {"Content-Type": "application/json"}
CASES: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("POST", "/openai/chat?tenant=contoso", JSON, b'[{"role": "user", "content": "Tell me about Milan"}]'),
    ("POST", "/openai/chat?tenant=contoso", JSON, b"[{"),  # not JSON
    ("POST", "/openai/chat?tenant=contoso", {"Content-Type": "text/plain"}, b"hello"),
    ("POST", "/openai/chat?tenant=contoso", JSON, b""),
    ("POST", "/openai/chat?tenant=contoso", JSON, b'[{"role": "user", "content": "' + b"x" * 5000 + b'"}]'),
    ("POST", "/openai/chat?tenant=con/toso", JSON, b'[{"role": "user", "content": "hi"}]'),
    ("POST", "/openai/chat", JSON, b'[{"role": "user", "content": "hi"}]'),  # no tenant
    ("GET", "/openai/chat?tenant=contoso", {}, None),  # 405 from FastAPI
    ("POST", "/openai/chat/?tenant=contoso", JSON, b"[]"),  # no trailing-slash route
    ("POST", "/openai/stream?tenant=contoso", {**JSON, "Accept": "text/event-stream"},
     b'[{"role": "user", "content": "Tell me about Milan"}]'),
    ("POST", "/openai/stream?tenant=contoso", JSON, b'[{"role": "user", "content": "Tell me about Milan"}]'),
    ("POST", "/openai/stream?tenant=contoso", JSON, b'{"role": "user"}'),
    ("POST", COMPAT, {**JSON, "X-Tenant": "contoso"}, b'{"messages": [{"role": "user", "content": "hi"}]}'),
    ("POST", COMPAT, {**JSON, "X-Tenant": "contoso"}, b'{"messages": [{"role": "user", "content": "hi"}], '
                                                      b'"stream": true}'),
    ("POST", "/openai/deployments/nope/chat/completions?api-version=2024-10-21", {**JSON, "X-Tenant": "contoso"},
     b'{"messages": []}'),
    ("POST", "/openai/deployments//chat/completions", {**JSON, "X-Tenant": "contoso"}, b"{}"),
    ("POST", "/openai/v1/chat/completions", {**JSON, "X-Tenant": "contoso"},
     b'{"model": "gpt-35-turbo-16k", "messages": [{"role": "user", "content": "hi"}]}'),
    ("POST", "/openai/v1/chat/completions", JSON, b'{"model": "gpt-35-turbo-16k"}'),  # no tenant
    ("POST", "/openai/v1/embeddings", {**JSON, "X-Tenant": "contoso"}, b'{"model": "gpt-35-turbo-16k", "input": 1'),
    ("GET", "/openai/echo?tenant=contoso&value=3", {}, None),
]
VARIES = {"date", "server", "content-length", "apim-request-id", "x-request-id", "x-ms-region"}


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def seen(response: httpx.Response) -> dict[str, Any]:
    """What a caller can rely on: status, type, header names, and the whole body of an error."""
    return {"status": response.status_code, "type": response.headers.get("content-type"),
            "headers": sorted(set(response.headers) - VARIES),
            "body": response.text if response.status_code >= 400 else bool(response.content)}


async def test_hot_routes_answer_every_request_as_fastapi_does(tmp_path: Path) -> None:
    alpha = await start_simulator("AlphaOpenAI")
    tree = settings_tree({"AlphaOpenAI": alpha}, Gateway={"MaxBodyBytes": 2000})
    tree["TenantAzureOpenAIMappings"] = {"contoso": "AlphaOpenAI"}
    settings = settings_from(tree, tmp_path)
    hot_app, plain_app = create_app(settings), create_app(settings, hot_routes=False)
    try:
        statuses: set[int] = set()
        async with serve(hot_app) as hot, serve(plain_app) as plain:
            for method, path, headers, body in CASES:
                answers = [await client.request(method, path, headers=headers, content=body) for client in (hot, plain)]
                assert seen(answers[0]) == seen(answers[1]), (method, path, body)
                statuses.add(answers[0].status_code)
            assert {a.status_code for a in answers} == {200}  # the last case, echo, is FastAPI's own route
            metrics = [(await client.get("/metrics")).text for client in (hot, plain)]
            schema = (await hot.get("/openapi.json")).json()
    finally:
        await alpha.stop()
    requests = [sorted(line for line in text.splitlines() if line.startswith("gateway_requests_total{"))
                for text in metrics]  # the same counts per route and status
    assert statuses == {200, 400, 404, 405, 413}
    assert requests[0] == requests[1] and any('route="chat",status="200"' in r for r in requests[0])
    assert any('route="compat_chat"' in r for r in requests[0]) and any('route="stream"' in r for r in requests[0])
    assert {"/openai/chat", "/openai/stream", "/openai/deployments/{deployment}/chat/completions",
            "/openai/v1/chat/completions"} <= set(schema["paths"])
