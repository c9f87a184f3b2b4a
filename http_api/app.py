"""The local REST server: the very handlers of ``function_app.py`` on FastAPI/uvicorn, plus an
OpenAPI document and a Swagger UI that work offline."""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException

from core import Settings

from ._handlers import RestHandlers
from ._problems import problem
from ._runtime import LazyGateway, settings_from_environment

_CONVERSATION_SCHEMA: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"type": "string", "enum": ["system", "user", "assistant"]},
            "content": {"type": "string"},
        },
    },
    "example": [{"role": "user", "content": "Tell me about Milan"}],
}
_TENANT_PARAMS: list[dict[str, Any]] = [
    {"name": "tenant", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "Tenant name (else the X-Tenant header, else the JWT's 'tenant' claim)"},
    {"name": "X-Tenant", "in": "header", "required": False, "schema": {"type": "string"}},
]
_ERRORS: dict[str, Any] = {
    str(code): {"description": text, "content": {"application/problem+json": {}}}
    for code, text in [(400, "Bad input"), (401, "Unauthenticated"), (413, "Body too large"),
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


def create_app(settings: Settings | None = None) -> FastAPI:
    """The REST app over one gateway built from ``settings`` (default: environment)."""
    provider = LazyGateway(settings if settings is not None else settings_from_environment)
    handlers = RestHandlers(provider)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await provider()  # build and start at start-up: configuration errors surface now
        yield
        await provider.aclose()

    app = FastAPI(title="Azure OpenAI multitenant gateway", version="0.1.0", docs_url=None,
                  redoc_url=None, lifespan=lifespan, telemetry=_TELEMETRY)
    body = {"required": True, "content": {"application/json": {"schema": _CONVERSATION_SCHEMA}}}
    app.add_api_route(
        "/openai/echo", handlers.echo, methods=["GET"], summary="Echo the tenant and a value",
        openapi_extra={"parameters": [*_TENANT_PARAMS, {"name": "value", "in": "query", "required": True,
                                                         "schema": {"type": "integer"}}],
                       "responses": {"200": {"description": "tenant: t value: N",
                                             "content": {"text/plain": {}}}, **_ERRORS}},
    )
    app.add_api_route(
        "/openai/chat", handlers.chat, methods=["POST"], summary="Chat completion (plain text)",
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
    app.add_api_route("/metrics", handlers.metrics, methods=["GET"], summary="Prometheus metrics")
    app.add_api_route("/healthz", handlers.healthz, methods=["GET"], summary="Liveness")
    _add_docs(app)
    _add_problem_handlers(app)
    return app



def _add_docs(app: FastAPI) -> None:
    import swagger_ui_bundle

    app.mount("/docs/static", StaticFiles(directory=str(swagger_ui_bundle.swagger_ui_path)),
              name="swagger-static")

    async def docs(_: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title=f"{app.title} - Swagger UI",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
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
