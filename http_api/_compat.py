"""The Azure OpenAI-compatible API: the official SDKs' routes, bodies passed through.

``/openai/deployments/{deployment}/chat/completions|embeddings?api-version=...`` (what
``AzureOpenAI(azure_endpoint=<gateway>)`` calls), ``/openai/v1/chat/completions|embeddings``
(``OpenAI(base_url=<gateway>/openai/v1)``, the deployment in ``model``) and the Responses API
(``/openai/v1/responses``, ``/openai/responses``). Errors the gateway decides
use Azure's ``{"error": {"code", "message"}}`` so SDK exceptions carry the message; an upstream's
own error (429, 5xx) passes through with its status, body and retry headers.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import AsyncIterator

import orjson
from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from core import Gateway, GatewayError, InvalidRequest, Operation, RelayedStream, Unauthenticated

from ._handlers import GatewayProvider, credentials_of
from ._problems import status_for
from ._wire import EncodedResponse, encoded, query_of, read_body

log = logging.getLogger("http_api.compat")

_DEPLOYMENT = re.compile(r"/openai/deployments/([^/]+)/")
_CODES = {400: "BadRequest", 401: "401", 403: "403", 404: "DeploymentNotFound", 413: "RequestEntityTooLarge",
          429: "429", 502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class CompatHandlers:
    """One handler per route; all share :meth:`_relay`."""

    def __init__(self, provider: GatewayProvider) -> None:
        self._provider = provider

    async def deployment_chat(self, request: Request) -> Response:
        return await self._relay(request, "chat/completions", by_path=True)

    async def deployment_embeddings(self, request: Request) -> Response:
        return await self._relay(request, "embeddings", by_path=True)

    async def v1_chat(self, request: Request) -> Response:
        return await self._relay(request, "chat/completions", by_path=False)

    async def v1_embeddings(self, request: Request) -> Response:
        return await self._relay(request, "embeddings", by_path=False)

    async def responses(self, request: Request) -> Response:
        """``/openai/v1/responses`` and ``/openai/responses?api-version=`` (AzureOpenAI's ``responses``)."""
        return await self._relay(request, "responses", by_path=False)

    async def _relay(self, request: Request, operation: Operation, *, by_path: bool) -> Response:
        gateway = await self._provider()
        started = time.perf_counter()
        route = f"compat_{operation.partition('/')[0]}"
        try:
            # The caller's api-key / bearer JWT (or, in Auth:Mode none, tenant / X-Tenant); never forwarded.
            tenant = await gateway.authenticate(credentials_of(request))
            deployment = _deployment(request) if by_path else None
            body = await read_body(request, gateway.max_body_bytes,
                                   empty="the body is empty; send the request as a JSON object")
            answer = await gateway.relay(tenant, operation, body, deployment=deployment,
                                         api_version=query_of(request).get("api-version"))
        except GatewayError as exc:
            response = error_response(exc)
            gateway.observe_request(route, response.status_code, time.perf_counter() - started)
            return response
        headers = encoded(answer.headers)
        if answer.budget is not None:  # the tenant's own budget, not the instance's, under these names
            budget = encoded(answer.budget.headers())
            names = {name for name, _ in budget}
            headers = [pair for pair in headers if pair[0] not in names] + budget
        headers.append((b"x-gateway-instance", answer.instance.encode("latin-1")))
        if answer.stream is None:
            gateway.observe_request(route, answer.status, time.perf_counter() - started)
            return EncodedResponse(answer.body, answer.status, headers)
        stream_headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
        stream_headers.update(_STREAM_HEADERS)
        return StreamingResponse(_relayed(answer.stream, gateway, started), status_code=answer.status,
                                 headers=stream_headers, media_type="text/event-stream")


def error_response(error: GatewayError) -> Response:
    """The upstream's own answer when it sent one, else ``{"error": {"code", "message"}}``."""
    upstream = error.upstream_response
    if upstream is not None:
        return Response(upstream.body, status_code=upstream.status, headers=dict(upstream.headers))
    status = status_for(error)
    headers: dict[str, str] = dict(error.budget.headers()) if error.budget is not None else {}
    if isinstance(error, Unauthenticated):  # RFC 6750, as on the other routes
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
        headers["retry-after-ms"] = str(max(0, round(error.retry_after * 1000)))
    body = {"error": {"code": _CODES.get(status, str(status)), "message": error.detail}}
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


async def _relayed(stream: RelayedStream, gateway: Gateway, started: float) -> AsyncIterator[bytes]:
    """The upstream's events as they arrive; a failure after the 200 ends with an SSE error event
    (the SDKs raise ``APIError`` with its message). The upstream is closed however it ends."""
    status = "200"
    try:
        async for chunk in stream:
            yield chunk
    except GatewayError as exc:
        status = str(status_for(exc))
        log.warning("relayed stream from %s ended early: %s", stream.instance, exc.detail)
        code = _CODES.get(status_for(exc), status)
        yield b"data: " + orjson.dumps({"error": {"code": code, "message": exc.detail}}) + b"\n\n"
    finally:
        await stream.aclose()
        gateway.observe_request("compat_stream", status, time.perf_counter() - started)


def _deployment(request: Request) -> str:
    match = _DEPLOYMENT.search(request.scope["path"])  # not request.url: it would build the whole URL
    if match is None or not match.group(1).strip():
        raise InvalidRequest("the path must be /openai/deployments/{deployment}/...")
    return match.group(1)
