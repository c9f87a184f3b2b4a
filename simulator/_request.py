"""Parsing and validation of a chat-completions request body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

ROLES = frozenset({"system", "user", "assistant", "tool", "function", "developer"})
MAX_STOP_SEQUENCES = 4
MAX_CHOICES = 128


class InvalidRequest(ValueError):
    """The body breaks the chat-completions schema; ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: list[dict[str, Any]]
    max_tokens: int | None
    stream: bool
    include_usage: bool
    stop: tuple[str, ...]
    n: int
    seed: int | None
    body: dict[str, Any]  # the whole request, for pass-through fields (tools, response_format, ...)


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Validate a request body the way the service does; raises :class:`InvalidRequest`."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The request body must be valid JSON."
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    _check_numbers(body)
    max_tokens = _int(body, "max_tokens", 1, None)
    if max_tokens is None:
        max_tokens = _int(body, "max_completion_tokens", 1, None)
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", "stream")
    return ChatRequest(
        messages=_messages(body.get("messages")),
        max_tokens=max_tokens,
        stream=stream,
        include_usage=_include_usage(body.get("stream_options"), stream),
        stop=_stop(body.get("stop")),
        n=_int(body, "n", 1, MAX_CHOICES) or 1,
        seed=_int(body, "seed", None, None),
        body=body,
    )


def _messages(value: Any) -> list[dict[str, Any]]:
    if value is None:
        raise InvalidRequest("'messages' is a required property", "messages")
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'messages' must be a non-empty array.", "messages")
    for position, message in enumerate(value):
        param = f"messages[{position}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{param} must be an object.", param)
        role = message.get("role")
        if role not in ROLES:
            raise InvalidRequest(f"{param}.role must be one of {', '.join(sorted(ROLES))}.", f"{param}.role")
        content = message.get("content")
        if content is None and role != "assistant":
            raise InvalidRequest(f"{param}.content is required for role '{role}'.", f"{param}.content")
        if content is not None and not isinstance(content, (str, list)):
            raise InvalidRequest(
                f"{param}.content must be a string or an array of parts.", f"{param}.content"
            )
    return value


def _int(body: dict[str, Any], key: str, low: int | None, high: int | None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{key}' must be an integer.", key)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise InvalidRequest(f"'{key}' must be {bounds}, got {value}.", key)
    return value


def _check_numbers(body: dict[str, Any]) -> None:
    for key, low, high in (
        ("temperature", 0.0, 2.0),
        ("top_p", 0.0, 1.0),
        ("presence_penalty", -2.0, 2.0),
        ("frequency_penalty", -2.0, 2.0),
    ):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidRequest(f"'{key}' must be a number.", key)
        if not low <= value <= high:
            raise InvalidRequest(f"'{key}' must be between {low:g} and {high:g}, got {value}.", key)


def _include_usage(options: Any, stream: bool) -> bool:
    if options is None:
        return False
    if not stream:
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
        )
    if not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object.", "stream_options")
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise InvalidRequest(
            "'stream_options.include_usage' must be a boolean.", "stream_options.include_usage"
        )
    return include


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if (
        isinstance(value, list)
        and len(value) <= MAX_STOP_SEQUENCES
        and all(isinstance(s, str) for s in value)
    ):
        return tuple(value)
    raise InvalidRequest(
        f"'stop' must be a string or an array of at most {MAX_STOP_SEQUENCES} strings.", "stop"
    )
