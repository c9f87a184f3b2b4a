"""The floor: the least a Python relay of the C# sample's chat can do, to measure the gateway against.

uvicorn with httptools and uvloop, one plain ASGI callable, one shared aiohttp session, orjson; no
framework, no SDK objects, no validation, tenancy, limits or metrics. ``POST /chat`` takes the
conversation array, sends Azure's chat/completions request and answers the reply text;
``POST /stream`` asks for a stream and relays each chunk's text as ``data: {"delta": ...}`` events
as they arrive (the gateway's SSE format), ending with ``data: [DONE]``.

    .venv/bin/python bench/floor.py --port 8082 --upstream http://127.0.0.1:8081
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import uvicorn

DEPLOYMENT = "gpt-35-turbo-16k"
KEY = "bench-key"
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Floor:
    """The ASGI app: two routes, one session for the process's life (opened at lifespan start-up)."""

    def __init__(self, upstream: str) -> None:
        self.url = f"{upstream.rstrip('/')}/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2024-10-21"
        self.headers = {"api-key": KEY, "Content-Type": "application/json"}
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["path"] == "/stream":
            await self.stream(body, send)
        else:
            await self.chat(body, send)

    async def chat(self, body: bytes, send: Send) -> None:
        assert self.session is not None
        request = orjson.dumps({"messages": orjson.loads(body), "max_tokens": 100})
        async with self.session.post(self.url, data=request, headers=self.headers) as response:
            answer = orjson.loads(await response.read())
        text = answer["choices"][0]["message"]["content"].encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(text)).encode())]})
        await send({"type": "http.response.body", "body": text})

    async def stream(self, body: bytes, send: Send) -> None:
        assert self.session is not None
        request = orjson.dumps({"messages": orjson.loads(body), "max_tokens": 100, "stream": True,
                                "stream_options": {"include_usage": True}})
        async with self.session.post(self.url, data=request, headers=self.headers) as response:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            async for line in response.content:
                if not line.startswith(b"data: {"):
                    continue
                choices = orjson.loads(line[6:])["choices"]
                text = choices[0]["delta"].get("content") if choices else None
                if text:
                    event = b"data: " + orjson.dumps({"delta": text}) + b"\n\n"
                    await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--upstream", required=True, help="the Azure OpenAI endpoint, e.g. http://127.0.0.1:8081")
    args = parser.parse_args()
    uvicorn.run(Floor(args.upstream), host="127.0.0.1", port=args.port, http="httptools", loop="uvloop",
                lifespan="on", log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
