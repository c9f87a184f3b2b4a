"""Embeddings, tools and response_format on the simulator, through the real openai SDK."""

from __future__ import annotations

import json
import math

import httpx
import openai
import pytest

DEPLOYMENT = "gpt-35-turbo-16k"  # conftest's (fixtures come from it; names are not imported: rootdir conftests clash)

TOOL = {"type": "function", "function": {"name": "book_table", "parameters": {
    "type": "object", "properties": {"guests": {"type": "integer"}, "city": {"type": "string"},
                                     "terrace": {"type": "boolean"}}}}}


async def test_embeddings_are_deterministic_unit_vectors_with_exact_usage(sim, client, tokens):
    first = await client.embeddings.create(model=DEPLOYMENT, input=["Milan", "Pisa is lovely"])
    again = await client.embeddings.create(model=DEPLOYMENT, input="Milan", dimensions=1536,
                                           encoding_format="float")
    assert [d.index for d in first.data] == [0, 1]
    assert first.data[0].embedding == pytest.approx(again.data[0].embedding, rel=1e-6)  # base64 and float agree
    assert math.isclose(sum(v * v for v in first.data[1].embedding), 1.0, rel_tol=1e-4)
    expected = tokens.count("Milan") + tokens.count("Pisa is lovely")
    assert (first.usage.prompt_tokens, first.usage.total_tokens) == (expected, expected)
    stats = sim.stats
    assert stats.succeeded == 2 and stats.reported.total_tokens == expected + tokens.count("Milan")


async def test_embeddings_check_input_and_take_the_same_faults_and_limits(start_sim,
                                                                          make_client):
    server = await start_sim(tpm=10)
    client = make_client(server)
    with pytest.raises(openai.BadRequestError, match="input"):
        await client.embeddings.create(model=DEPLOYMENT, input=[])
    with pytest.raises(openai.RateLimitError):
        await client.embeddings.create(model=DEPLOYMENT, input="word " * 40)
    server.set_fault(status=503, count=1)
    with pytest.raises(openai.InternalServerError):
        await client.embeddings.create(model=DEPLOYMENT, input="x")
    async with httpx.AsyncClient() as raw:
        missing = await raw.post(f"{server.url}openai/deployments/nope/embeddings?api-version=2024-10-21",
                                 json={"input": "x"}, headers={"api-key": "sim-key-alpha"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "DeploymentNotFound"


async def test_tool_choice_and_response_format_shape_the_reply(client):
    messages = [{"role": "user", "content": "Book for four in Lucca"}]
    called = await client.chat.completions.create(model=DEPLOYMENT, messages=messages, tools=[TOOL])
    (call,) = called.choices[0].message.tool_calls or []
    arguments = json.loads(call.function.arguments)
    assert called.choices[0].finish_reason == "tool_calls" and called.choices[0].message.content is None
    assert set(arguments) == {"guests", "city", "terrace"} and isinstance(arguments["guests"], int)
    answered = await client.chat.completions.create(model=DEPLOYMENT, tools=[TOOL], messages=[
        *messages, {"role": "assistant", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "booked"}])
    assert answered.choices[0].message.content and not answered.choices[0].message.tool_calls
    none = await client.chat.completions.create(model=DEPLOYMENT, messages=messages, tools=[TOOL], tool_choice="none")
    assert none.choices[0].message.content
    schema = {"type": "json_schema", "json_schema": {"name": "city", "schema": {
        "type": "object", "properties": {"name": {"type": "string"}, "population": {"type": "integer"}}}}}
    shaped = await client.chat.completions.create(model=DEPLOYMENT, messages=messages, response_format=schema)
    assert set(json.loads(shaped.choices[0].message.content or "")) == {"name", "population"}
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        await client.chat.completions.create(model=DEPLOYMENT, messages=messages, tools=[TOOL],
                                             tool_choice={"type": "function", "function": {"name": "other"}})


async def test_streamed_tool_call_arguments_add_up(client):
    stream = await client.chat.completions.create(
        model=DEPLOYMENT, messages=[{"role": "user", "content": "Book"}], tools=[TOOL], stream=True,
        stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    arguments = "".join(c.choices[0].delta.tool_calls[0].function.arguments or ""
                        for c in chunks if c.choices and c.choices[0].delta.tool_calls)
    assert set(json.loads(arguments)) == {"guests", "city", "terrace"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


async def test_responses_api_on_both_paths_with_usage(sim, client, tokens):
    v1 = openai.AsyncOpenAI(base_url=f"{sim.url}openai/v1", api_key="unused",
                            default_headers={"api-key": "sim-key-alpha"}, max_retries=0)
    reply = await v1.responses.create(model=DEPLOYMENT, input="Tell me about Milan", max_output_tokens=5)
    assert reply.output_text and reply.usage is not None and reply.usage.output_tokens <= 5
    expected_prompt = tokens.prompt([{"role": "user", "content": "Tell me about Milan"}])
    assert reply.usage.input_tokens == expected_prompt
    events = [e async for e in await client.responses.create(model=DEPLOYMENT, input="Hi", stream=True)]
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == events[-1].response.output_text
    with pytest.raises(openai.NotFoundError):
        await v1.responses.create(model="nope", input="x")
    assert sim.stats.reported.total_tokens == reply.usage.total_tokens + events[-1].response.usage.total_tokens
    await v1.close()
