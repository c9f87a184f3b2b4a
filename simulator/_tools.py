"""Pass-through fields a real model acts on: ``tools`` / ``tool_choice`` and ``response_format``.

Deterministic stand-ins for what a model would do, so a client can tell they reached the service:
- with ``tools`` and ``tool_choice`` not ``"none"``, the reply is a call of the named function
  (``tool_choice: {"type": "function", ...}``), of the first tool (``"required"``), or, with
  ``"auto"`` (the default), of the first tool when the last message is the user's; after a ``tool``
  message the model answers in text. Arguments fill the function's JSON-schema properties;
- ``response_format: {"type": "json_object"}`` makes the content a JSON object ``{"answer": ...}``;
  ``json_schema`` fills the schema's properties.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson

from simulator._request import InvalidRequest


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON object, as the API sends it


def check_tools(body: dict[str, Any]) -> tuple[tuple[dict[str, Any], ...], Any, Any]:
    """(tools, tool_choice, response_format), validated like the service does."""
    tools = body.get("tools") or []
    if not isinstance(tools, list) or not all(
        isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("function"), dict)
        and isinstance(t["function"].get("name"), str) for t in tools
    ):
        raise InvalidRequest("'tools' must be an array of {\"type\": \"function\", \"function\": {\"name\", ...}}.",
                             "tools")
    choice = body.get("tool_choice")
    if choice is not None and choice not in ("none", "auto", "required") and not (
        isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str)
    ):
        raise InvalidRequest("'tool_choice' must be none, auto, required or a named function.", "tool_choice")
    if isinstance(choice, dict) and choice["function"]["name"] not in {t["function"]["name"] for t in tools}:
        raise InvalidRequest(f"tool_choice names '{choice['function']['name']}', which is not in 'tools'.",
                             "tool_choice")
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") in ("text", "json_object", "json_schema")):
        raise InvalidRequest("'response_format.type' must be text, json_object or json_schema.", "response_format")
    return tuple(tools), choice, fmt


def tool_call(tools: tuple[dict[str, Any], ...], choice: Any, messages: list[dict[str, Any]],
              rng: random.Random) -> ToolCall | None:
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        wanted = choice["function"]["name"]
        function = next(t["function"] for t in tools if t["function"]["name"] == wanted)  # checked already
    elif choice == "required" or messages[-1].get("role") == "user":
        function = tools[0]["function"]
    else:
        return None
    arguments = _fill(function.get("parameters") or {}, rng)
    return ToolCall(f"call_{rng.getrandbits(64):016x}", function["name"], orjson.dumps(arguments).decode())


def formatted(fmt: Any, text: str, rng: random.Random) -> str:
    """The content under ``response_format`` (unchanged for text)."""
    if not isinstance(fmt, dict) or fmt.get("type") == "text":
        return text
    if fmt.get("type") == "json_object":
        return orjson.dumps({"answer": text}).decode()
    schema = (fmt.get("json_schema") or {}).get("schema") or {}
    return orjson.dumps(_fill(schema, rng, text)).decode()


def _fill(schema: Any, rng: random.Random, text: str = "") -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind == "object" or (isinstance(schema, dict) and "properties" in schema):
        props = schema.get("properties") or {}
        return {name: _fill(sub, rng, text) for name, sub in props.items()}
    if isinstance(schema, dict) and isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "array":
        return [_fill(schema.get("items") or {"type": "string"}, rng, text) for _ in range(2)]
    words = text.split() or ["Paris", "Milan", "Azure", "tenant", "river"]
    return " ".join(rng.choice(words) for _ in range(3)).strip(".,!?")
