"""Azure OpenAI wire shapes: error bodies, chat.completion and chat.completion.chunk objects."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from email.utils import formatdate
from typing import Any

import orjson
from aiohttp import web

from simulator._text import Completion

SYSTEM_FINGERPRINT = "fp_sim0000001"
_SAFE = {"filtered": False, "severity": "safe"}
CONTENT_FILTER_OK: dict[str, Any] = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
PROMPT_FILTER_OK: list[dict[str, Any]] = [{"prompt_index": 0, "content_filter_results": CONTENT_FILTER_OK}]

MSG_UNAUTHORIZED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
    "key for an active subscription and use a correct regional API endpoint for your resource."
)
MSG_DEPLOYMENT_NOT_FOUND = (
    "The API deployment for this resource does not exist. If you created the deployment within the "
    "last 5 minutes, please wait a moment and try again."
)
MSG_NO_API_VERSION = "Resource not found: the 'api-version' query parameter is required."
MSG_NOT_FOUND = "Resource not found"
_STATUS_CODES = {
    400: "BadRequest",
    408: "Timeout",
    429: "429",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_STATUS_MESSAGES = {
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The service is temporarily unable to process your request. Please try again later.",
    504: "The server timed out while processing your request.",
}


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> web.Response:
    """An Azure-style ``{"error": {"code", "message", ...}}`` JSON response."""
    body = {"error": {"code": code, "message": message, **extra}}
    return web.Response(status=status, body=dumps(body), content_type="application/json", headers=headers)


def bad_request(message: str, param: str | None = None) -> web.Response:
    return error_response(400, "BadRequest", message, param=param, type="invalid_request_error")


def retry_headers(retry_after_ms: int, style: str = "both") -> dict[str, str]:
    """By default ``retry-after-ms`` (exact) and ``retry-after`` (whole seconds, rounded up).

    Other styles seen in the wild: only one of them (``ms``, ``seconds``), ``Retry-After`` as an
    HTTP date (``date``), or only OpenAI's ``x-ratelimit-reset-requests``/``-tokens`` (``reset``).
    """
    seconds = max(1, math.ceil(retry_after_ms / 1000))
    if style == "ms":
        return {"retry-after-ms": str(retry_after_ms)}
    if style == "seconds":
        return {"retry-after": str(seconds)}
    if style == "date":
        return {"retry-after": formatdate(time.time() + seconds, usegmt=True)}
    if style == "reset":
        reset = f"{retry_after_ms}ms"
        return {"x-ratelimit-reset-requests": reset, "x-ratelimit-reset-tokens": reset}
    return {"retry-after-ms": str(retry_after_ms), "retry-after": str(seconds)}


def throttled_message(api_version: str, exceeded: str, retry_after_ms: int) -> str:
    kind = "token rate limit" if exceeded == "tokens" else "call rate limit"
    seconds = max(1, math.ceil(retry_after_ms / 1000))
    return (
        f"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version {api_version} "
        f"have exceeded {kind} of your current OpenAI S0 pricing tier. Please retry after {seconds} "
        "seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further "
        "increase the default rate limit."
    )


def fault_response(status: int, retry_after_ms: int, api_version: str, style: str = "both") -> web.Response:
    """The error an injected fault answers with."""
    if status == 429:
        message = throttled_message(api_version, "tokens", retry_after_ms)
        return error_response(429, "429", message, headers=retry_headers(retry_after_ms, style))
    code = _STATUS_CODES.get(status, str(status))
    message = _STATUS_MESSAGES.get(status, f"Simulated failure (HTTP {status}).")
    return error_response(status, code, message)


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_body(
    ident: str,
    created: int,
    model: str,
    choices: list[Completion],
    usage_: dict[str, int],
    content_filter: bool,
) -> dict[str, Any]:
    """A ``chat.completion`` object, one choice per completion."""
    body: dict[str, Any] = {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [_choice(i, c, content_filter) for i, c in enumerate(choices)],
        "usage": usage_,
    }
    if content_filter:
        body["prompt_filter_results"] = PROMPT_FILTER_OK
    return body


def _choice(index: int, completion: Completion, content_filter: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": completion.text}
    call = completion.tool_call
    if call is not None:
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}]}
    choice: dict[str, Any] = {
        "index": index,
        "finish_reason": completion.finish_reason,
        "logprobs": None,
        "message": message,
    }
    if content_filter:
        choice["content_filter_results"] = CONTENT_FILTER_OK
    return choice


def prompt_filter_chunk() -> dict[str, Any]:
    """Azure's first stream event: no choices, only the prompt's filter results."""
    return {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": PROMPT_FILTER_OK,
    }


def chunk(
    ident: str,
    created: int,
    model: str,
    index: int,
    delta: dict[str, Any],
    finish: str | None = None,
    content_filter: bool = False,
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` with one choice."""
    choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
    if content_filter:
        choice["content_filter_results"] = CONTENT_FILTER_OK if delta.get("content") else {}
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [choice],
    }


def usage_chunk(ident: str, created: int, model: str, usage_: dict[str, int]) -> dict[str, Any]:
    """The extra last chunk sent when ``stream_options.include_usage`` is true."""
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [],
        "usage": usage_,
    }


def sse(event: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
