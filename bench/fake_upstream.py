"""A fixed-response Azure OpenAI stand-in, as cheap as a Python server gets: an asyncio protocol on
uvloop with httptools' parser, answering every POST with one canned ``chat.completion`` (or, when
the body asks for ``"stream": true``, one canned SSE stream with a usage chunk). No routing, no
key check, no JSON parsing: the hot-path benchmark measures relays, not this.

    .venv/bin/python bench/fake_upstream.py --port 8081
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal

import httptools
import orjson
import uvloop

_STREAM = re.compile(rb'"stream"\s*:\s*true')
_TEXT = "Milan is the capital of Lombardy, a global hub of fashion, design and finance."


def _completion() -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "gpt-35-turbo-16k",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": _TEXT}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 17, "total_tokens": 29},
    })


def _stream() -> bytes:
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "gpt-35-turbo-16k"}
    words = _TEXT.split(" ")
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    events = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]}]
    events += [{**head, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**head, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": len(pieces),
                                                    "total_tokens": 12 + len(pieces)}})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _response(content_type: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: " + content_type + b"\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\napim-request-id: bench\r\n\r\n" + body)


COMPLETION = _response(b"application/json", _completion())
STREAM = _response(b"text/event-stream", _stream())


class FixedResponse(asyncio.Protocol):
    """Reads requests (keep-alive, pipelining) and writes the canned answer for each."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.streaming = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.streaming = False

    def on_body(self, body: bytes) -> None:
        if _STREAM.search(body):
            self.streaming = True

    def on_message_complete(self) -> None:
        assert self.transport is not None
        self.transport.write(STREAM if self.streaming else COMPLETION)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FixedResponse, host, port, backlog=2048)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
