"""The Responses API (``POST /openai/v1/responses``, and ``/openai/responses?api-version=``): the same
generated text as chat completions, in the ``response`` object and its streamed events.

``model`` names the deployment; ``input`` is a string or a list of messages (string or
``input_text`` parts); ``instructions`` becomes a system message; ``max_output_tokens`` caps the
text. Usage is ``input_tokens`` / ``output_tokens`` / ``total_tokens``, counted like chat.
"""

from __future__ import annotations

from typing import Any

import orjson

from simulator._request import InvalidRequest
from simulator._stream import split_text


def to_chat(body: Any) -> tuple[str, dict[str, Any]]:
    """(deployment, an equivalent chat-completions body) for a Responses request."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required.", "model")
    value = body.get("input")
    if isinstance(value, str):
        messages: list[dict[str, Any]] = [{"role": "user", "content": value}]
    elif isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        messages = [{"role": m.get("role", "user"), "content": _text(m.get("content"))} for m in value]
    else:
        raise InvalidRequest("'input' must be a string or a non-empty array of messages.", "input")
    if isinstance(body.get("instructions"), str):
        messages.insert(0, {"role": "system", "content": body["instructions"]})
    chat: dict[str, Any] = {"messages": messages, "stream": bool(body.get("stream"))}
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    if chat["stream"]:
        chat["stream_options"] = {"include_usage": True}
    return model, chat


def _text(content: Any) -> Any:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content


def response_object(ident: str, created: int, model: str, text: str, prompt: int, completion: int,
                    status: str = "completed") -> dict[str, Any]:
    return {
        "id": ident, "object": "response", "created_at": created, "status": status, "model": model,
        "output": [] if status != "completed" else [{
            "type": "message", "id": f"msg_{ident[5:]}", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "usage": None if status != "completed" else {
            "input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion},
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "text": {"format": {"type": "text"}},
    }


def stream_events(ident: str, created: int, model: str, text: str, prompt: int, completion: int) -> bytes:
    """The whole event stream: created, one delta per piece, done, completed (with the usage)."""
    item = f"msg_{ident[5:]}"
    events: list[dict[str, Any]] = [
        {"type": "response.created", "sequence_number": 0,
         "response": response_object(ident, created, model, "", 0, 0, status="in_progress")}]
    for piece in split_text(text):
        events.append({"type": "response.output_text.delta", "item_id": item, "output_index": 0,
                       "content_index": 0, "delta": piece, "sequence_number": len(events)})
    events.append({"type": "response.output_text.done", "item_id": item, "output_index": 0, "content_index": 0,
                   "text": text, "sequence_number": len(events)})
    events.append({"type": "response.completed", "sequence_number": len(events),
                   "response": response_object(ident, created, model, text, prompt, completion)})
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events)
