"""Tenant limits over real HTTP: OpenAI's x-ratelimit-* headers, 429 + Retry-After before Azure,
settlement of chats, streams, disconnects and failures, and no stall under huge prompts."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from gateway_stack import gateway_stack

QUESTION = [{"role": "user", "content": "Tell me about Milan"}]
LIMITS = {"Limits": {"WindowSeconds": 60, "Tenants": {
    "contoso": {"TokensPerMinute": 6000, "RequestsPerMinute": 100},
    "acme": {"TokensPerMinute": 250},
    "initech": {"RequestsPerMinute": 2},
}}}  # fmt: skip


def remaining(response: httpx.Response) -> int:
    return int(response.headers["x-ratelimit-remaining-tokens"])


async def sse_usage(client: httpx.AsyncClient, tenant: str) -> int:
    async with client.stream("POST", f"/openai/stream?tenant={tenant}", json=QUESTION,
                             headers={"Accept": "text/event-stream"}) as response:
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit-tokens"] == "6000"
        body = "".join([chunk async for chunk in response.aiter_text()])
    usage = body.split("event: usage\ndata: ")[1].split("\n")[0]
    return int(json.loads(usage)["total_tokens"])


async def test_limited_tenants_see_their_budget_and_pay_real_usage_after_settling(tmp_path):
    async with gateway_stack(tmp_path, **LIMITS) as stack:
        chat = await stack.client.post("/openai/chat?tenant=contoso", json=QUESTION)
        streamed = await sse_usage(stack.client, "contoso")
        after = await stack.client.post("/openai/chat?tenant=contoso", json=QUESTION)
        free = await stack.client.post("/openai/chat?tenant=fabrikam", json=QUESTION)
    assert chat.status_code == after.status_code == 200
    assert chat.headers["x-ratelimit-limit-tokens"] == "6000"
    assert chat.headers["x-ratelimit-limit-requests"] == "100"
    assert remaining(chat) == 6000 - int(chat.headers["x-total-tokens"])  # the estimate was given back
    spent = int(chat.headers["x-total-tokens"]) + streamed + int(after.headers["x-total-tokens"])
    assert remaining(after) == 6000 - spent
    assert after.headers["x-ratelimit-remaining-requests"] == "97"
    assert not any(h.startswith("x-ratelimit") for h in free.headers)  # no limits: no headers


async def test_over_the_limit_is_429_with_retry_after_and_never_reaches_azure(tmp_path):
    async with gateway_stack(tmp_path, **LIMITS) as stack:
        first = await stack.client.post("/openai/chat?tenant=acme", json=QUESTION)
        before = stack.alpha.stats.requests + stack.beta.stats.requests
        refused = await stack.client.post("/openai/chat?tenant=acme", json=QUESTION)
        refused_stream = await stack.client.post("/openai/stream?tenant=acme", json=QUESTION)
        after = stack.alpha.stats.requests + stack.beta.stats.requests
        by_requests = [await stack.client.post("/openai/chat?tenant=initech", json=QUESTION) for _ in range(3)]
        metrics = await stack.metrics()
    assert first.status_code == 200
    for response in (refused, refused_stream):
        assert response.status_code == 429
        assert response.headers["content-type"] == "application/problem+json"
        assert 50 <= int(response.headers["retry-after"]) <= 67  # until the first request leaves the window
        assert response.headers["x-ratelimit-limit-tokens"] == "250"
        assert int(response.headers["x-ratelimit-remaining-tokens"]) < 225  # less than this request's estimate
        assert "acme" in response.json()["detail"] and "retry after" in response.json()["detail"]
    assert after == before  # refused requests never reached an instance
    assert [r.status_code for r in by_requests] == [200, 200, 429]
    assert by_requests[2].headers["x-ratelimit-remaining-requests"] == "0"
    limited = ("gateway_rate_limited_requests_total", (("limit", "tokens"), ("tenant_name", "acme")))
    assert metrics[limited] == 2
    assert metrics[("gateway_rate_limit_remaining", (("limit", "requests"), ("tenant_name", "initech")))] == 0


async def test_disconnects_and_upstream_failures_give_the_estimate_back(tmp_path):
    async with gateway_stack(tmp_path, sim_options={"per_token_latency_ms": 30}, **LIMITS) as stack:
        async with stack.client.stream("POST", "/openai/stream?tenant=contoso", json=QUESTION,
                                       headers={"Accept": "text/event-stream"}) as response:
            held = remaining(response)  # the estimate is held while the stream runs
            async for _ in response.aiter_bytes():
                break  # the caller hangs up after the first delta
        await asyncio.sleep(0.5)  # the gateway notices at its next write (30 ms per token)
        stack.alpha.set_fault(status=500, count=1)
        failed = await stack.client.post("/openai/chat?tenant=contoso", json=QUESTION)
        after = await stack.client.post("/openai/chat?tenant=contoso", json=QUESTION)
    estimate = 6000 - held
    assert failed.status_code == 502 and failed.headers["x-ratelimit-limit-tokens"] == "6000"
    cut_short = 6000 - remaining(after) - int(after.headers["x-total-tokens"])
    assert 0 < cut_short < estimate - 100  # billed the prompt and what was sent; the rest came back


async def test_huge_prompts_do_not_stall_other_requests(tmp_path):
    """Ten 1 MiB prompts of repeated letters (~0.4 s of tokenizer each) while /healthz is polled:
    counting runs off the event loop, so health checks stay fast."""
    def body(i: int) -> bytes:  # every prompt different: nothing is counted only once
        return json.dumps([{"role": "user", "content": chr(97 + i) * 199_000 + str(j)} for j in range(5)]).encode()

    async with gateway_stack(tmp_path, **LIMITS) as stack:
        await stack.client.get("/healthz")

        async def post(i: int) -> int:
            tenant = "contoso" if i % 2 else "tenant9"  # limited, and not
            response = await stack.client.post(f"/openai/chat?tenant={tenant}", content=body(i),
                                               headers={"Content-Type": "application/json"})
            return response.status_code

        async def health() -> list[float]:
            delays = []
            await asyncio.sleep(0.05)
            for _ in range(20):
                started = time.perf_counter()
                assert (await stack.client.get("/healthz")).status_code == 200
                delays.append(time.perf_counter() - started)
                await asyncio.sleep(0.02)
            return delays

        results = await asyncio.gather(health(), *(post(i) for i in range(10)))
    delays, statuses = results[0], results[1:]
    assert all(status == 400 for status in statuses), statuses  # too long for the context: the caller's problem
    assert max(delays) < 0.5, delays
