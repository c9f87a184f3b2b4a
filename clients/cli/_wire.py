"""Incremental decoders for the two streaming wire formats of `POST /openai/stream`.

* default: a JSON array of strings written as the text is produced (``["Hel","lo"]``) — the
  wire format of the C# sample's ``IAsyncEnumerable<string>``;
* ``Accept: text/event-stream``: Server-Sent Events — ``data: {"delta": "..."}`` per delta,
  ``event: usage`` with the token counts, ``data: [DONE]`` at the end, ``event: error`` with a
  problem document if the upstream fails mid-stream.

Both decoders take text chunks cut anywhere and hand back complete items only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


class WireError(ValueError):
    """The bytes on the wire are not the documented format."""


class JsonArrayDecoder:
    """Feed text chunks of ``["a","b",...]``; get the strings as soon as each one is complete."""

    def __init__(self) -> None:
        self._buffer = ""
        self._opened = False
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the closing ``]`` arrived: the stream ended normally."""
        return self._closed

    def feed(self, chunk: str) -> list[str]:
        self._buffer += chunk
        items: list[str] = []
        pos = 0
        buf = self._buffer
        while pos < len(buf):
            char = buf[pos]
            if char in " \t\r\n,":
                pos += 1
            elif char == "[" and not self._opened:
                self._opened = True
                pos += 1
            elif char == "]" and self._opened and not self._closed:
                self._closed = True
                pos += 1
            elif char == '"' and self._opened and not self._closed:
                end = _string_end(buf, pos)
                if end < 0:
                    break
                items.append(_load_string(buf[pos : end + 1]))
                pos = end + 1
            else:
                raise WireError(f"unexpected {char!r} in the streamed JSON array")
        self._buffer = buf[pos:]
        return items


def _string_end(buf: str, start: int) -> int:
    """Index of the quote closing the JSON string opened at ``start``, or -1 if not there yet."""
    pos = start + 1
    while pos < len(buf):
        if buf[pos] == "\\":
            pos += 2
            continue
        if buf[pos] == '"':
            return pos
        pos += 1
    return -1


def _load_string(token: str) -> str:
    try:
        value = json.loads(token)
    except json.JSONDecodeError as exc:
        raise WireError(f"bad JSON string in stream: {exc.msg}") from exc
    if not isinstance(value, str):
        raise WireError("stream item is not a string")
    return value


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str


class SseDecoder:
    """Feed text chunks of an event stream; get complete events (``event`` defaults to "message")."""

    def __init__(self) -> None:
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: str) -> list[SseEvent]:
        self._buffer += chunk.replace("\r\n", "\n").replace("\r", "\n")
        events: list[SseEvent] = []
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> SseEvent | None:
        if line == "":
            if not self._data:
                self._event = ""
                return None
            event = SseEvent(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def delta_text(data: str) -> str:
    """The text of one SSE delta: ``{"delta": "..."}`` (a bare JSON string is accepted too)."""
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise WireError(f"bad JSON in SSE data: {exc.msg}") from exc
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("delta"), str):
        return str(value["delta"])
    raise WireError("SSE data carries no text delta")


def json_object(data: str) -> dict[str, object]:
    try:
        value = json.loads(data)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
