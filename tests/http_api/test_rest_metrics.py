"""Token accounting: /metrics equals what Azure OpenAI (the simulator) reported, exactly."""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict

import pytest
from gateway_stack import gateway_stack

KINDS = ("prompt", "completion", "total")


def labels(instance: str, tenant: str, method: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"openai_name": instance, "tenant_name": tenant, "method_name": method}.items()))


async def test_token_counters_equal_the_usage_reported_upstream(tmp_path):
    rng = random.Random(3)
    questions = [f"Question {i}: what is special about city number {i}?" * rng.randint(1, 4)
                 for i in range(12)]
    counted: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])

    async def one(tenant: str, method: str, question: str) -> None:
        body = [{"role": "user", "content": question}]
        if method == "chat":
            r = await stack.client.post(f"/openai/chat?tenant={tenant}", json=body)
            assert r.status_code == 200
            usage = [int(r.headers[f"x-{k}-tokens"]) for k in KINDS]
            instance = r.headers["x-gateway-instance"]
        else:
            r = await stack.client.post(f"/openai/stream?tenant={tenant}", json=body,
                                        headers={"Accept": "text/event-stream"})
            event = next(e for e in r.text.split("\n\n") if e.startswith("event: usage"))
            data = json.loads(event.split("data: ", 1)[1])
            usage = [data[f"{k}_tokens"] for k in KINDS]
            instance = data["instance"]
        row = counted[(instance.lower(), tenant, method)]
        for i in range(3):
            row[i] += usage[i]

    async with gateway_stack(tmp_path) as stack:
        jobs = [one(tenant, method, rng.choice(questions))
                for tenant in ("contoso", "fabrikam", "acme", "initech")
                for method in ("chat", "stream") for _ in range(5)]
        await asyncio.gather(*jobs)
        # JSON-array streams carry no usage to the client: mapped tenants, checked per instance.
        for _ in range(3):
            async with stack.client.stream("POST", "/openai/stream?tenant=contoso",
                                           json=[{"role": "user", "content": "More on Milan"}]) as r:
                assert json.loads(await r.aread())
        samples = await stack.metrics()
        reported = {name: stack.sim(name).stats.reported for name in ("AlphaOpenAI", "BetaOpenAI")}

    for (instance, tenant, method), values in counted.items():
        for kind, value in zip(KINDS, values, strict=True):
            key = (f"openai_{kind}_tokens_total", labels(instance, tenant, method))
            if tenant != "contoso" or method != "stream":
                assert samples[key] == value, key
    for name, usage in reported.items():
        for kind in KINDS:
            total = sum(v for (metric, lab), v in samples.items()
                        if metric == f"openai_{kind}_tokens_total" and dict(lab)["openai_name"] == name.lower())
            assert total == getattr(usage, f"{kind}_tokens"), (name, kind)
    # Histograms saw one observation per request; the gauges hold the last request's tokens.
    requests = sum(v for (metric, _), v in samples.items() if metric == "openai_total_tokens_count")
    assert requests == 4 * 2 * 5 + 3
    assert all(samples[("openai_total_tokens_processed", lab)] > 0
               for (metric, lab) in samples if metric == "openai_total_tokens_total")


async def test_request_counter_and_latency_by_route_and_status(tmp_path):
    async with gateway_stack(tmp_path) as stack:
        await stack.client.post("/openai/chat?tenant=contoso", json=[{"role": "user", "content": "hi"}])
        await stack.client.post("/openai/chat?tenant=contoso", json=[])
        await stack.client.get("/openai/echo?tenant=contoso&value=2")
        samples = await stack.metrics()
    assert samples[("gateway_requests_total", (("route", "chat"), ("status", "200")))] == 1
    assert samples[("gateway_requests_total", (("route", "chat"), ("status", "400")))] == 1
    assert samples[("gateway_requests_total", (("route", "echo"), ("status", "200")))] == 1
    assert samples[("gateway_request_duration_seconds_count", (("route", "chat"),))] == 2


async def test_cut_stream_still_counts_the_tokens_it_used(tmp_path):
    """A client that hangs up mid-stream is still billed: nothing is dropped."""
    async with gateway_stack(tmp_path, sim_options={"per_token_latency_ms": 20.0}) as stack:
        async with stack.client.stream("POST", "/openai/stream?tenant=contoso",
                                       json=[{"role": "user", "content": "Tell me a long story"}]) as r:
            async for _ in r.aiter_raw():
                break  # hang up after the first bytes
        for _ in range(100):
            samples = await stack.metrics()
            key = ("openai_prompt_tokens_total", labels("alphaopenai", "contoso", "stream"))
            if key in samples:
                break
            await asyncio.sleep(0.05)
    assert samples[key] > 0


async def test_upstream_dropping_a_stream_midway_ends_it_with_an_error_event_and_bills_what_was_sent(tmp_path):
    async with gateway_stack(tmp_path) as stack:
        stack.alpha.set_fault(drop=True, drop_after_chunks=4, count=1)
        response = await stack.client.post("/openai/stream?tenant=contoso", json=[{"role": "user", "content": "Hi"}],
                                           headers={"Accept": "text/event-stream"})
        samples = await stack.metrics()
    events = [e for e in response.text.split("\n\n") if e]
    error = json.loads(next(e for e in events if e.startswith("event: error")).split("data: ", 1)[1])
    assert error["status"] == 503 and "AlphaOpenAI" in error["detail"]
    assert "data: [DONE]" not in events
    assert samples[("openai_prompt_tokens_total", labels("alphaopenai", "contoso", "stream"))] > 0
    assert samples[("gateway_requests_total", (("route", "stream"), ("status", "503")))] == 1


async def test_json_array_stream_cut_by_the_upstream_is_aborted_not_completed(tmp_path):
    """The JSON-array format cannot carry an error: the client must see a broken body, not a valid
    but truncated answer; the tokens used are still billed."""
    import httpx

    async with gateway_stack(tmp_path) as stack:
        stack.alpha.set_fault(drop=True, drop_after_chunks=4, count=1)
        with pytest.raises(httpx.HTTPError):
            async with stack.client.stream("POST", "/openai/stream?tenant=contoso",
                                           json=[{"role": "user", "content": "Hi"}]) as response:
                json.loads(await response.aread())
        samples = await stack.metrics()
    assert samples[("openai_prompt_tokens_total", labels("alphaopenai", "contoso", "stream"))] > 0
    assert samples[("gateway_requests_total", (("route", "stream"), ("status", "503")))] == 1


async def test_a_client_hanging_up_mid_stream_is_counted_as_499_while_the_upstream_is_still_talking(tmp_path):
    """Both stream formats: the hang-up ends the relay at once (the story would take seconds more)."""
    async with gateway_stack(tmp_path, sim_options={"per_token_latency_ms": 200.0}) as stack:
        for accept in ("text/event-stream", "application/json"):
            async with stack.client.stream("POST", "/openai/stream?tenant=contoso", headers={"Accept": accept},
                                           json=[{"role": "user", "content": "Tell me a long story"}]) as r:
                async for _ in r.aiter_raw():
                    break  # hang up after the first bytes
        key = ("gateway_requests_total", (("route", "stream"), ("status", "499")))
        for _ in range(40):
            samples = await stack.metrics()
            if samples.get(key) == 2:
                break
            await asyncio.sleep(0.05)
        assert samples.get(key) == 2
        answer = await stack.client.post("/openai/stream?tenant=contoso", json=[{"role": "user", "content": "Hi"}])
    assert answer.status_code == 200 and answer.text.endswith("]")
