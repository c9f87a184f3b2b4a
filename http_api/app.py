"""The local REST server: the very handlers of ``function_app.py`` on FastAPI/uvicorn, plus an
OpenAPI document and a Swagger UI that work offline."""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from core import Settings

from ._compat import CompatHandlers
from ._handlers import RestHandlers
from ._hot import HotRoutes
from ._problems import problem
from ._runtime import LazyGateway, settings_from_environment

_CONVERSATION_SCHEMA: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "maxItems": 256,  # Gateway:MaxMessages (default)
    "contains": {"type": "object", "required": ["role"], "properties": {"role": {"const": "user"}}},
    "items": {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"type": "string", "enum": ["system", "user", "assistant"]},
            "content": {"type": "string", "minLength": 1, "maxLength": 200_000, "pattern": "\\S"},
        },
    },
    "example": [{"role": "user", "content": "Tell me about Milan"}],
}
_TENANT_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$",
                                  "example": "contoso"}
_TENANT_PARAMS: list[dict[str, Any]] = [
    {"name": "tenant", "in": "query", "required": False, "schema": _TENANT_SCHEMA,
     "description": "Tenant name (else the X-Tenant header, else the JWT's 'tenant' claim); "
                    "trimmed and lower-cased"},
    {"name": "X-Tenant", "in": "header", "required": False, "schema": _TENANT_SCHEMA},
]
_INT32: dict[str, Any] = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_PROBLEM: dict[str, Any] = {"application/problem+json": {}}
_ERRORS: dict[str, Any] = {
    str(code): {"description": text, "content": {"application/problem+json": {}}}
    for code, text in [(400, "Bad input"), (401, "Unauthenticated"), (403, "Another tenant than the credentials'"),
                       (413, "Body too large"),
                       (429, "Limited; see Retry-After"), (502, "Upstream failed"),
                       (503, "Upstream unavailable"), (504, "Upstream timeout")]
}


# FastAPI's own OpenTelemetry support: with a tracer provider installed (core.configure_telemetry)
# a SERVER span per request continuing the caller's traceparent; nothing at all without one. No
# spans per dependency/serialisation step and no request metrics (cost; Prometheus has them), no
# FastAPI log records (they carry stack traces).
_UNTRACED = ("/healthz", "/metrics", "/docs", "/openapi.json")


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    """Probes, scrapes and the docs get no span."""
    return str(scope.get("path", "")).startswith(_UNTRACED)


_TELEMETRY: TelemetryConfig = {"operation_spans": False, "logs": False, "metrics": False, "exclude": _untraced}


class GatewayApp(FastAPI):
    """FastAPI, with the hot routes (chat, stream, the compatible API's POSTs) dispatched before its
    router and middleware: the same handlers, a fifth less CPU per request (docs/rest-server.md)."""

    hot_routes: HotRoutes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self.hot_routes.match(scope) if self.hot_routes is not None else None
        if hot is None:
            await super().__call__(scope, receive, send)
        else:
            await self.hot_routes.serve(hot, scope, receive, send)  # type: ignore[union-attr]


def create_app(settings: Settings | None = None, *, provider: LazyGateway | None = None,
               hot_routes: bool = True) -> FastAPI:
    """The REST app over one gateway: ``provider``'s, else one built from ``settings`` (default:
    environment). ``hot_routes=False``: every request through FastAPI (to measure what it costs)."""
    if provider is None:
        provider = LazyGateway(settings if settings is not None else settings_from_environment)
    handlers = RestHandlers(provider)
    compat = CompatHandlers(provider)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await provider()  # build and start at start-up: configuration errors surface now
        yield
        await provider.aclose()

    # No trailing-slash redirects: Starlette builds their Location from the Host header.
    app = GatewayApp(title="Azure OpenAI multitenant gateway", version="0.1.0", docs_url=None,
                     redoc_url=None, lifespan=lifespan, redirect_slashes=False, telemetry=_TELEMETRY)
    body = {"required": True, "content": {"application/json": {"schema": _CONVERSATION_SCHEMA}}}
    app.add_api_route(
        "/openai/echo", handlers.echo, methods=["GET"], response_class=PlainTextResponse,
        summary="Echo the tenant and a value",
        openapi_extra={"parameters": [*_TENANT_PARAMS, {"name": "value", "in": "query", "required": True,
                                                         "schema": _INT32}],
                       "responses": {"200": {"description": "tenant: t value: N",
                                             "content": {"text/plain": {}}}, **_ERRORS}},
    )
    app.add_api_route(
        "/openai/chat", handlers.chat, methods=["POST"], response_class=PlainTextResponse,
        summary="Chat completion (plain text)",
        openapi_extra={"parameters": _TENANT_PARAMS, "requestBody": body,
                       "responses": {"200": {"description": "The completion text",
                                             "content": {"text/plain": {}}}, **_ERRORS}},
    )
    app.add_api_route(
        "/openai/stream", handlers.stream, methods=["POST"],
        summary="Streamed chat completion: JSON array of strings, or SSE with Accept: text/event-stream",
        openapi_extra={"parameters": _TENANT_PARAMS, "requestBody": body,
                       "responses": {"200": {"description": "Text deltas as they arrive", "content": {
                           "application/json": {"schema": {"type": "array", "items": {"type": "string"}}},
                           "text/event-stream": {}}}, **_ERRORS}},
    )
    _add_compat_routes(app, compat)
    app.add_api_route(
        "/metrics", handlers.metrics, methods=["GET"], response_class=PlainTextResponse, summary="Prometheus metrics",
        openapi_extra={"responses": {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {}}},
            "404": {"description": "Prometheus:Enabled is false", "content": _PROBLEM}}},
    )
    app.add_api_route(
        "/healthz", handlers.healthz, methods=["GET"], response_class=PlainTextResponse, summary="Liveness",
        openapi_extra={"responses": {"200": {"description": "ok", "content": {"text/plain": {}}}}},
    )
    app.add_api_route(
        "/admin/usage", handlers.usage, methods=["GET"],
        summary="Usage ledger per tenant, instance, deployment and hour or day (JSON or CSV)",
        openapi_extra={"parameters": [
            {"name": "tenant", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "Only this tenant's rows (a tenant's own credential sees only its own)"},
            {"name": "from", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "ISO 8601 date or time, UTC unless an offset is given (default: first of the month)"},
            {"name": "to", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "ISO 8601 date or time, exclusive (default: now)"},
            {"name": "groupBy", "in": "query", "required": False,
             "schema": {"type": "string", "enum": ["hour", "day"], "default": "day"}},
            {"name": "format", "in": "query", "required": False,
             "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"}}],
            "responses": {"200": {"description": "Usage lines", "content": {
                "application/json": {}, "text/csv": {}}}, **_ERRORS}},
    )
    _add_docs(app)
    _add_problem_handlers(app)
    if hot_routes:
        app.hot_routes = HotRoutes(app, handlers, compat)
    return app


_AZURE_ERROR = {"application/json": {"schema": {"type": "object", "properties": {"error": {
    "type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}}}
_COMPAT_ERRORS: dict[str, Any] = {
    str(code): {"description": text, "content": _AZURE_ERROR}
    for code, text in [(400, "Bad input"), (401, "Unauthenticated"), (404, "Unknown deployment"),
                       (413, "Body too large"), (429, "Limited; see Retry-After / retry-after-ms"),
                       (502, "Upstream failed"), (503, "Upstream unavailable"), (504, "Upstream timeout")]
}
_PASS_THROUGH = {"type": "object", "additionalProperties": True,
                 "description": "The Azure OpenAI request body, passed through unchanged"}

def _add_compat_routes(app: FastAPI, compat: CompatHandlers) -> None:
    """The Azure OpenAI-compatible API (docs/compatible-api.md)."""
    deployment = {"name": "deployment", "in": "path", "required": True, "schema": {"type": "string"},
                  "description": "A deployment name the gateway serves (an instance's Deployment, Model "
                                 "or AzureOpenAI:Services:<Name>:Deployments key)"}
    version = {"name": "api-version", "in": "query", "required": False, "schema": {"type": "string"},
               "example": "2024-10-21"}
    body = {"required": True, "content": {"application/json": {"schema": _PASS_THROUGH}}}
    chat_ok = {"200": {"description": "chat.completion JSON, or SSE chunks when stream is true",
                       "content": {"application/json": {}, "text/event-stream": {}}}, **_COMPAT_ERRORS}
    responses_ok = {"200": {"description": "response object, or its events when stream is true",
                            "content": {"application/json": {}, "text/event-stream": {}}}, **_COMPAT_ERRORS}
    embed_ok = {"200": {"description": "embeddings list", "content": {"application/json": {}}},
                **_COMPAT_ERRORS}
    for path, handler, params, responses, summary in (
        ("/openai/deployments/{deployment}/chat/completions", compat.deployment_chat,
         [deployment, version], chat_ok, "Azure OpenAI chat completions (pass-through)"),
        ("/openai/deployments/{deployment}/embeddings", compat.deployment_embeddings,
         [deployment, version], embed_ok, "Azure OpenAI embeddings (pass-through)"),
        ("/openai/v1/chat/completions", compat.v1_chat, [], chat_ok,
         "OpenAI v1 chat completions (deployment in model)"),
        ("/openai/v1/embeddings", compat.v1_embeddings, [], embed_ok, "OpenAI v1 embeddings (deployment in model)"),
        ("/openai/v1/responses", compat.responses, [], responses_ok, "Responses API (deployment in model)"),
        ("/openai/responses", compat.responses, [version], responses_ok,
         "Responses API, the path AzureOpenAI's client.responses uses (deployment in model)"),
    ):
        app.add_api_route(path, handler, methods=["POST"], summary=summary, tags=["Azure OpenAI-compatible"],
                          openapi_extra={"parameters": [*params, *_TENANT_PARAMS], "requestBody": body,
                                         "responses": responses})


def _add_docs(app: FastAPI) -> None:
    """Swagger UI 5 (reads OpenAPI 3.1) from the ``fastapi-offline`` package: no CDN, no internet."""
    import fastapi_offline

    static = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs/static", StaticFiles(directory=str(static)), name="swagger-static")

    async def docs(_: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title=f"{app.title} - Swagger UI",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon.png",
        )

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)


def _add_problem_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = {404: f"no route {request.url.path}; see /docs for the API",
                  405: f"{request.method} is not allowed on {request.url.path}"}.get(
            exc.status_code, str(exc.detail))
        return problem(exc.status_code, str(exc.detail), detail, instance=request.url.path,
                       headers=dict(exc.headers or {}))

    async def validation_error(request: Request, exc: Exception) -> Response:
        return problem(400, "Invalid request", str(exc)[:500], instance=request.url.path)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
