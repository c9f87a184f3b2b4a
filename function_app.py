"""Azure Functions host (Python v2 model): registers the HTTP triggers, nothing else.

Every trigger uses the FastAPI extension's Request/Response types (required for streaming) and
delegates to the handlers shared with the local server (``http_api``).
"""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response, StreamingResponse

from http_api import CompatHandlers, RestHandlers, gateway_from_environment, telemetry_from_environment

telemetry_from_environment()  # before the gateway: with APPLICATIONINSIGHTS_CONNECTION_STRING set
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
gateway = gateway_from_environment()
handlers = RestHandlers(gateway)
compat = CompatHandlers(gateway)


@app.route(route="openai/echo", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def echo(req: Request) -> Response:
    return await handlers.echo(req)


@app.route(route="openai/chat", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def chat(req: Request) -> Response:
    return await handlers.chat(req)


@app.route(route="openai/stream", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def stream(req: Request) -> StreamingResponse:
    return await handlers.stream(req)


@app.route(route="openai/deployments/{deployment}/chat/completions", methods=["POST"],
           auth_level=func.AuthLevel.FUNCTION)
async def deployment_chat(req: Request) -> Response:
    return await compat.deployment_chat(req)


@app.route(route="openai/deployments/{deployment}/embeddings", methods=["POST"],
           auth_level=func.AuthLevel.FUNCTION)
async def deployment_embeddings(req: Request) -> Response:
    return await compat.deployment_embeddings(req)


@app.route(route="openai/v1/chat/completions", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def v1_chat(req: Request) -> Response:
    return await compat.v1_chat(req)


@app.route(route="openai/v1/embeddings", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def v1_embeddings(req: Request) -> Response:
    return await compat.v1_embeddings(req)


@app.route(route="openai/v1/responses", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def v1_responses(req: Request) -> Response:
    return await compat.responses(req)


@app.route(route="openai/responses", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def responses(req: Request) -> Response:
    return await compat.responses(req)
@app.route(route="admin/usage", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def usage(req: Request) -> Response:
    return await handlers.usage(req)


@app.route(route="metrics", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def metrics(req: Request) -> Response:
    return await handlers.metrics(req)


@app.route(route="healthz", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def healthz(req: Request) -> Response:
    return await handlers.healthz(req)
