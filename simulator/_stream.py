"""Server-Sent Events in Azure OpenAI's chat.completion.chunk format."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from simulator import _azure as azure
from simulator._text import Completion

MIN_PIECE_CHARS = 1
MAX_PIECE_CHARS = 7

Outcome = Literal["complete", "drop", "disconnected"]


@dataclass(frozen=True, slots=True)
class StreamPlan:
    ident: str
    created: int
    model: str
    prompt_tokens: int
    completions: list[Completion]
    include_usage: bool

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.completions)


def split_text(text: str) -> list[str]:
    """Deterministic pieces of a few characters; boundaries fall inside words and tokens too."""
    rng = random.Random(text)
    pieces: list[str] = []
    position = 0
    while position < len(text):
        size = rng.randint(MIN_PIECE_CHARS, MAX_PIECE_CHARS)
        pieces.append(text[position : position + size])
        position += size
    return pieces


def _events(plan: StreamPlan, content_filter: bool, per_token_ms: float) -> Iterator[tuple[bytes, float]]:
    """(SSE event, delay in ms before it) for the whole stream except ``[DONE]``."""
    ident, created, model = plan.ident, plan.created, plan.model
    if content_filter:
        yield azure.sse(azure.prompt_filter_chunk()), 0.0
    for index, completion in enumerate(plan.completions):
        call = completion.tool_call
        role: dict[str, Any] = {"role": "assistant", "content": ""}
        if call is not None:
            role = {"role": "assistant", "content": None, "tool_calls": [{
                "index": 0, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}]}
        yield azure.sse(azure.chunk(ident, created, model, index, role, None, content_filter)), 0.0
        pieces = split_text(call.arguments if call is not None else completion.text)
        delay = per_token_ms * completion.completion_tokens / len(pieces) if pieces else 0.0
        for piece in pieces:
            delta: dict[str, Any] = (
                {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} if call is not None
                else {"content": piece})
            event = azure.chunk(ident, created, model, index, delta, None, content_filter)
            yield azure.sse(event), delay
        last = azure.chunk(ident, created, model, index, {}, completion.finish_reason, content_filter)
        yield azure.sse(last), 0.0
    if plan.include_usage:
        usage = azure.usage(plan.prompt_tokens, plan.completion_tokens)
        yield azure.sse(azure.usage_chunk(ident, created, model, usage)), 0.0


async def write_stream(
    response: web.StreamResponse,
    plan: StreamPlan,
    *,
    content_filter: bool,
    per_token_ms: float,
    drop_after: int | None,
    on_complete: Callable[[bool], None],
    stall: tuple[int, float] | None = None,
) -> Outcome:
    """Write every event, then ``[DONE]``; stop early to drop (fault) or when the client left.

    Events due at the same time go out in one write (zero latency: the whole stream at once).
    ``on_complete(reported)`` runs once all content (and the usage chunk, if asked) is written.
    ``stall`` = (k, ms): after k events, send nothing for ms milliseconds (a stalled upstream).
    """
    pending: list[bytes] = []
    sent = 0
    try:
        for payload, delay in _events(plan, content_filter, per_token_ms):
            if drop_after is not None and sent >= drop_after:
                await _flush(response, pending)
                return "drop"
            if stall is not None and sent == stall[0]:
                await _flush(response, pending)
                await asyncio.sleep(stall[1] / 1000)
            if delay > 0:
                await _flush(response, pending)
                await asyncio.sleep(delay / 1000)
            pending.append(payload)
            sent += 1
        if drop_after is not None and sent >= drop_after:
            await _flush(response, pending)
            return "drop"
        on_complete(plan.include_usage)
        pending.append(azure.SSE_DONE)
        await _flush(response, pending)
        await response.write_eof()
    except ConnectionError:
        return "disconnected"
    return "complete"


async def _flush(response: web.StreamResponse, pending: list[bytes]) -> None:
    if pending:
        data = b"".join(pending)
        pending.clear()
        await response.write(data)
