"""Streamed chat completions (SSE) through the real `openai` SDK and raw HTTP."""

from __future__ import annotations

import aiohttp
import openai
import orjson

from simulator import SimulatorServer

DEPLOYMENT = "gpt-35-turbo-16k"
MESSAGES = [{"role": "user", "content": "Tell me about rivers in Europe."}]


async def _collect(stream: openai.AsyncStream) -> tuple[str, list, str | None, object]:
    pieces: list[str] = []
    chunks = []
    finish = None
    usage = None
    async for chunk in stream:
        chunks.append(chunk)
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    return "".join(pieces), chunks, finish, usage


async def test_stream_with_usage_chunk(client: openai.AsyncAzureOpenAI, tokens) -> None:
    stream = await client.chat.completions.create(
        model=DEPLOYMENT, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    text, chunks, finish, usage = await _collect(stream)

    assert finish == "stop"
    assert usage is not None
    assert usage.prompt_tokens == tokens.prompt(MESSAGES)
    assert usage.completion_tokens == tokens.count(text)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > usage.completion_tokens / 2, "text arrives in small pieces"


async def test_stream_text_equals_json_text(client: openai.AsyncAzureOpenAI) -> None:
    whole = await client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
    stream = await client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES, stream=True)
    text, _, _, _ = await _collect(stream)
    assert text == whole.choices[0].message.content


async def test_stream_without_include_usage_has_no_usage(client: openai.AsyncAzureOpenAI, sim) -> None:
    stream = await client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES, stream=True)
    text, _, finish, usage = await _collect(stream)

    assert text and finish == "stop"
    assert usage is None
    stats = sim.stats
    assert stats.reported.total_tokens == 0, "nothing was reported to the client"
    assert stats.generated.completion_tokens > 0, "but the completion was generated"


async def test_stream_max_tokens_finishes_with_length(client: openai.AsyncAzureOpenAI, tokens) -> None:
    stream = await client.chat.completions.create(
        model=DEPLOYMENT, messages=MESSAGES, stream=True, max_tokens=3, stream_options={"include_usage": True}
    )
    text, _, finish, usage = await _collect(stream)
    assert finish == "length"
    assert usage is not None and usage.completion_tokens == tokens.count(text) <= 3


async def test_raw_sse_wire_format(sim: SimulatorServer) -> None:
    url = f"{sim.url}openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2024-06-01"
    body = {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body, headers={"api-key": "sim-key-alpha"}) as response:
            assert response.status == 200
            assert response.content_type == "text/event-stream"
            raw = (await response.read()).decode()

    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    parsed = [orjson.loads(e[len("data: ") :]) for e in events[:-1]]
    assert parsed[0]["choices"] == [] and "prompt_filter_results" in parsed[0], "Azure's first event"
    assert parsed[1]["choices"][0]["delta"]["role"] == "assistant"
    assert parsed[-2]["choices"][0]["finish_reason"] == "stop"
    assert parsed[-1]["choices"] == [] and set(parsed[-1]["usage"]) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    }


async def test_stream_options_without_stream_is_400(client: openai.AsyncAzureOpenAI) -> None:
    try:
        await client.chat.completions.create(
            model=DEPLOYMENT, messages=MESSAGES, stream_options={"include_usage": True}
        )
    except openai.BadRequestError as exc:
        assert exc.body["param"] == "stream_options"
    else:
        raise AssertionError("stream_options without stream must be refused")
