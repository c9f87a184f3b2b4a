"""The REST contract over real HTTP: echo, chat, stream (both wire formats), tenants, routing."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import jwt
import pytest
from gateway_stack import gateway_stack

from core import ChatMessage
from core._tokens import count_prompt

QUESTION = [{"role": "user", "content": "Tell me about Milan"}]


async def test_echo_answers_plain_text_with_normalised_tenant(tmp_path):
    async with gateway_stack(tmp_path) as stack:
        response = await stack.client.get("/openai/echo", params={"tenant": "  ConToso ", "value": "42"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "tenant: contoso value: 42"


async def test_tenant_comes_from_query_then_header_then_jwt(tmp_path):
    token = jwt.encode({"tenant": "Fabrikam", "sub": "u1"}, "a-signing-key-of-32-bytes-or-more!", algorithm="HS256")
    async with gateway_stack(tmp_path) as stack:
        by_query = await stack.client.get("/openai/echo?tenant=acme&value=1",
                                          headers={"X-Tenant": "other"})
        by_header = await stack.client.get("/openai/echo?value=1", headers={"X-Tenant": "Initech"})
        by_jwt = await stack.client.get("/openai/echo?value=1",
                                        headers={"Authorization": f"Bearer {token}"})
    assert by_query.text == "tenant: acme value: 1"
    assert by_header.text == "tenant: initech value: 1"
    assert by_jwt.text == "tenant: fabrikam value: 1"


async def test_chat_goes_to_the_tenants_own_instance(tmp_path):
    async with gateway_stack(tmp_path) as stack:
        contoso = [await stack.client.post("/openai/chat?tenant=contoso", json=QUESTION) for _ in range(3)]
        fabrikam = await stack.client.post("/openai/chat", json=QUESTION, headers={"X-Tenant": "fabrikam"})
        alpha, beta = stack.alpha.stats, stack.beta.stats
    assert [r.status_code for r in contoso] == [200, 200, 200]
    assert {r.headers["x-gateway-instance"] for r in contoso} == {"AlphaOpenAI"}
    assert fabrikam.headers["x-gateway-instance"] == "BetaOpenAI"
    assert contoso[0].text and contoso[0].headers["content-type"].startswith("text/plain")
    assert (alpha.requests, beta.requests) == (3, 1)


async def test_unmapped_tenants_alternate_exactly_under_concurrency(tmp_path):
    async with gateway_stack(tmp_path) as stack:
        responses = await asyncio.gather(*(
            stack.client.post(f"/openai/chat?tenant=tenant{i % 7}", json=QUESTION) for i in range(50)
        ))
        sequential = [
            (await stack.client.post("/openai/chat?tenant=acme", json=QUESTION)).headers["x-gateway-instance"]
            for _ in range(6)
        ]
        alpha, beta = stack.alpha.stats.requests, stack.beta.stats.requests
    split = Counter(r.headers["x-gateway-instance"] for r in responses)
    assert all(r.status_code == 200 for r in responses)
    assert split == {"AlphaOpenAI": 25, "BetaOpenAI": 25}
    assert sequential in (["AlphaOpenAI", "BetaOpenAI"] * 3, ["BetaOpenAI", "AlphaOpenAI"] * 3)
    assert (alpha, beta) == (28, 28)


async def test_system_prompt_is_prepended_only_when_missing(tmp_path):
    async with gateway_stack(tmp_path) as stack:
        plain = await stack.client.post("/openai/chat?tenant=contoso", json=QUESTION)
        own = [{"role": "system", "content": "Answer in French."}, *QUESTION]
        with_own = await stack.client.post("/openai/chat?tenant=contoso", json=own)
    expected_plain = count_prompt([ChatMessage("system", "You are a test assistant."),
                                   ChatMessage("user", QUESTION[0]["content"])])
    expected_own = count_prompt([ChatMessage("system", "Answer in French."),
                                 ChatMessage("user", QUESTION[0]["content"])])
    # The simulator reports the prompt tokens of what it received.
    assert int(plain.headers["x-prompt-tokens"]) == expected_plain
    assert int(with_own.headers["x-prompt-tokens"]) == expected_own


async def test_long_history_is_truncated_keeping_system_and_last_user_message(tmp_path):
    # Budget: MaxTokens 400 - MaxResponseTokens 200 = 200 prompt tokens.
    history = []
    for i in range(30):
        history.append({"role": "user", "content": f"Question {i}: " + "tell me more about Milan " * 3})
        history.append({"role": "assistant", "content": "Milan is a city in Italy. " * 3})
    history.append({"role": "user", "content": "And what about Turin?"})
    async with gateway_stack(tmp_path, ChatCompletionsOptions={"MaxTokens": 400}) as stack:
        response = await stack.client.post("/openai/chat?tenant=contoso", json=history)
        too_long = await stack.client.post(
            "/openai/chat?tenant=contoso", json=[{"role": "user", "content": "Milan " * 400}])
    assert response.status_code == 200
    kept = int(response.headers["x-prompt-tokens"])
    assert 0 < kept <= 200
    assert too_long.status_code == 400
    assert too_long.headers["content-type"] == "application/problem+json"
    assert "limit is 200" in too_long.json()["detail"]


async def test_stream_json_array_arrives_incrementally(tmp_path):
    """The first element reaches the client while the simulator is still generating."""
    async with gateway_stack(tmp_path, sim_options={"per_token_latency_ms": 20.0}) as stack:
        chat = await stack.client.post("/openai/chat?tenant=contoso", json=QUESTION)
        async with stack.client.stream("POST", "/openai/stream?tenant=contoso", json=QUESTION) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/json")
            received = b""
            finished_before_first = None
            async for chunk in response.aiter_raw():
                received += chunk
                if finished_before_first is None and b'"' in received:
                    finished_before_first = stack.alpha.stats.succeeded
            body = json.loads(received)
    assert finished_before_first == 1  # only the earlier chat had finished upstream
    assert isinstance(body, list) and len(body) > 1
    assert "".join(body) == chat.text


async def test_stream_as_server_sent_events_ends_with_usage_and_done(tmp_path):
    async with gateway_stack(tmp_path) as stack:
        chat = await stack.client.post("/openai/chat?tenant=fabrikam", json=QUESTION)
        response = await stack.client.post("/openai/stream?tenant=fabrikam", json=QUESTION,
                                           headers={"Accept": "text/event-stream"})
    events = [e for e in response.text.split("\n\n") if e]
    deltas = [json.loads(e[len("data: "):])["delta"] for e in events if e.startswith("data: {")]
    usage = json.loads(next(e for e in events if e.startswith("event: usage")).split("data: ", 1)[1])
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "".join(deltas) == chat.text
    assert usage["total_tokens"] == int(chat.headers["x-total-tokens"])
    assert usage["instance"] == "BetaOpenAI"
    assert events[-1] == "data: [DONE]"


@pytest.mark.parametrize("route", ["chat", "stream"])
async def test_rate_limited_instance_fails_over_for_unmapped_tenants(tmp_path, route):
    async with gateway_stack(tmp_path) as stack:
        stack.alpha.set_fault(status=429, retry_after_ms=30_000)
        answers = [await stack.client.post(f"/openai/{route}?tenant=acme", json=QUESTION)
                   for _ in range(4)]
        alpha_statuses = stack.alpha.stats.status_counts
    assert [a.status_code for a in answers] == [200] * 4
    assert {a.headers["x-gateway-instance"] for a in answers} == {"BetaOpenAI"}
    assert alpha_statuses.get("429", 0) <= 1  # cooled down for retry-after-ms, not hammered


async def test_mapped_tenant_gets_429_with_retry_after_when_its_instance_is_limited(tmp_path):
    async with gateway_stack(tmp_path) as stack:
        stack.alpha.set_fault(status=429, retry_after_ms=2500)
        response = await stack.client.post("/openai/chat?tenant=contoso", json=QUESTION)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert "rate limited" in response.json()["detail"]


async def test_unreachable_instance_is_a_503_problem(tmp_path):
    async with gateway_stack(tmp_path) as stack:
        await stack.alpha.stop()
        response = await stack.client.post("/openai/chat?tenant=contoso", json=QUESTION)
    assert response.status_code == 503
    body = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert "AlphaOpenAI" in body["detail"] and "Traceback" not in response.text
