"""The Azure OpenAI-compatible API, used the way existing apps use Azure OpenAI: the official ``openai``
SDK (sync and async, ``AzureOpenAI`` and ``OpenAI`` v1) pointed at the gateway, which relays to two
simulators over real HTTP. Tokens billed are compared with what the simulators themselves counted.

The tenant travels in ``X-Tenant`` (``Auth:Mode`` none) until credential-based auth lands; the caller's
``api-key`` is deliberately not the simulators' key, so any success also shows it was not forwarded.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest
from gateway_stack import DEPLOYMENT, Stack, gateway_stack

EMBEDDING = "text-embedding-3-small"
VERSION = "2024-10-21"
CALLER_KEY = "callers-own-key-never-forwarded"
SIMS = {"extra_deployments": (EMBEDDING,)}
OVERRIDES: dict[str, Any] = {"AzureOpenAI": {"Services": {
    "AlphaOpenAI": {"Deployments": {EMBEDDING: EMBEDDING, "chat": DEPLOYMENT}},
    "BetaOpenAI": {"Deployments": {EMBEDDING: EMBEDDING, "chat": DEPLOYMENT}},
}}}
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"]}}}


@pytest.fixture
async def stack(tmp_path):
    async with gateway_stack(tmp_path, SIMS, **OVERRIDES) as running:
        yield running


def azure(stack: Stack, tenant: str = "contoso", **options: Any) -> openai.AsyncAzureOpenAI:
    return openai.AsyncAzureOpenAI(azure_endpoint=stack.url, api_key=CALLER_KEY, api_version=VERSION,
                                   default_headers={"X-Tenant": tenant}, max_retries=0, **options)


def v1(stack: Stack, tenant: str = "contoso") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{stack.url}/openai/v1", api_key=CALLER_KEY,
                              default_headers={"X-Tenant": tenant}, max_retries=0)


async def billed(stack: Stack, instance: str, tenant: str, method: str) -> tuple[float, float, float]:
    samples = await stack.metrics()
    labels = tuple(sorted({"openai_name": instance, "tenant_name": tenant, "method_name": method}.items()))
    return tuple(samples.get((f"openai_{k}_tokens_total", labels), 0.0)  # type: ignore[return-value]
                 for k in ("prompt", "completion", "total"))


def reported(stack: Stack, name: str) -> tuple[int, int, int]:
    totals = stack.sim(name).stats.reported
    return totals.prompt_tokens, totals.completion_tokens, totals.total_tokens


async def test_azure_sdk_chat_async_and_sync_billed_exactly_to_the_tenant(stack):
    client = azure(stack)
    reply = await client.chat.completions.create(
        model=DEPLOYMENT, messages=[{"role": "user", "content": "Tell me about Milan"}], seed=5)
    assert reply.choices[0].message.content and reply.usage is not None
    assert reply.prompt_filter_results  # Azure's own fields reach the caller: the body is passed through

    def sync_call() -> openai.types.chat.ChatCompletion:
        with openai.AzureOpenAI(azure_endpoint=stack.url, api_key=CALLER_KEY, api_version=VERSION,
                                default_headers={"X-Tenant": "contoso"}, max_retries=0) as sync:
            return sync.chat.completions.create(model=DEPLOYMENT, messages=[{"role": "user", "content": "Hi"}])

    again = await asyncio.to_thread(sync_call)
    assert again.choices[0].message.content
    usage = (reply.usage.prompt_tokens + again.usage.prompt_tokens,
             reply.usage.completion_tokens + again.usage.completion_tokens,
             reply.usage.total_tokens + again.usage.total_tokens)
    assert reported(stack, "AlphaOpenAI") == usage  # contoso is mapped to AlphaOpenAI
    assert await billed(stack, "alphaopenai", "contoso", "chat") == usage
    assert stack.beta.stats.requests == 0
    await client.close()


async def test_stream_without_include_usage_hides_the_usage_chunk_and_still_bills_it(stack):
    client = azure(stack)
    stream = await client.chat.completions.create(
        model=DEPLOYMENT, messages=[{"role": "user", "content": "Stream please"}], stream=True)
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and all(c.usage is None for c in chunks)
    assert all(c.choices or c.prompt_filter_results for c in chunks)  # no choice-less usage chunk
    assert stack.alpha.stats.reported.total_tokens > 0  # the gateway asked for it upstream
    assert await billed(stack, "alphaopenai", "contoso", "stream") == reported(stack, "AlphaOpenAI")
    await client.close()


async def test_stream_with_include_usage_gets_the_usage_chunk(stack):
    client = azure(stack, tenant="fabrikam")  # mapped to BetaOpenAI
    stream = await client.chat.completions.create(
        model=DEPLOYMENT, messages=[{"role": "user", "content": "Stream please"}], stream=True,
        stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    expected = (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
    assert reported(stack, "BetaOpenAI") == expected
    assert await billed(stack, "betaopenai", "fabrikam", "stream") == expected
    await client.close()


async def test_tools_and_response_format_pass_through(stack):
    client = azure(stack)
    called = await client.chat.completions.create(
        model=DEPLOYMENT, messages=[{"role": "user", "content": "Weather in Milan?"}], tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = called.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)

    as_json = await client.chat.completions.create(
        model=DEPLOYMENT, messages=[{"role": "user", "content": "Answer in JSON"}],
        response_format={"type": "json_object"}, seed=42)
    assert set(json.loads(as_json.choices[0].message.content or "")) == {"answer"}

    streamed = await client.chat.completions.create(
        model=DEPLOYMENT, messages=[{"role": "user", "content": "Weather in Pisa?"}], tools=[WEATHER_TOOL],
        stream=True)
    arguments = "".join([c.choices[0].delta.tool_calls[0].function.arguments or ""
                         async for c in streamed if c.choices and c.choices[0].delta.tool_calls])
    assert "city" in json.loads(arguments)
    assert (await billed(stack, "alphaopenai", "contoso", "chat"))[2] == (
        called.usage.total_tokens + as_json.usage.total_tokens)  # type: ignore[union-attr]
    assert (await billed(stack, "alphaopenai", "contoso", "stream"))[2] > 0
    await client.close()


async def test_embeddings_azure_and_v1_billed_as_embeddings(stack):
    client = azure(stack)
    vectors = await client.embeddings.create(model=EMBEDDING, input=["Milan", "Pisa"])  # SDK asks base64
    assert [len(d.embedding) for d in vectors.data] == [1536, 1536]
    small = await v1(stack).embeddings.create(model=EMBEDDING, input="Rome", dimensions=64,
                                              encoding_format="float")
    assert len(small.data[0].embedding) == 64
    prompt = vectors.usage.prompt_tokens + small.usage.prompt_tokens
    assert await billed(stack, "alphaopenai", "contoso", "embeddings") == (prompt, 0, prompt)
    assert reported(stack, "AlphaOpenAI") == (prompt, 0, prompt)
    await client.close()


async def test_v1_chat_maps_the_client_name_and_round_robins_unmapped_tenants(stack):
    client = v1(stack, tenant="newcomer")  # not mapped: round-robin over the instances serving "chat"
    for _ in range(4):
        reply = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "Hi"}])
        assert reply.model == DEPLOYMENT  # the instance's own deployment answered
    assert stack.alpha.stats.succeeded == 2 and stack.beta.stats.succeeded == 2
    total = reported(stack, "AlphaOpenAI")[2] + reported(stack, "BetaOpenAI")[2]
    assert (await billed(stack, "alphaopenai", "newcomer", "chat"))[2] + (
        await billed(stack, "betaopenai", "newcomer", "chat"))[2] == total
    await client.close()


async def test_unknown_deployment_is_a_404_naming_it(stack):
    client = azure(stack)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "Hi"}])
    assert "gpt-9" in caught.value.message and caught.value.code == "DeploymentNotFound"
    with pytest.raises(openai.NotFoundError, match="gpt-9"):
        await v1(stack).embeddings.create(model="gpt-9", input="x")
    assert stack.alpha.stats.requests == stack.beta.stats.requests == 0
    await client.close()


async def test_bad_bodies_are_400s_the_sdk_can_read(stack):
    raw = await stack.client.post(f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={VERSION}",
                                  content=b"{not json", headers={"X-Tenant": "contoso"})
    assert raw.status_code == 400 and "JSON" in raw.json()["error"]["message"]
    missing = await stack.client.post("/openai/v1/chat/completions", json={"messages": []},
                                      headers={"X-Tenant": "contoso"})
    assert missing.status_code == 400 and "'model'" in missing.json()["error"]["message"]
    client = azure(stack)
    with pytest.raises(openai.BadRequestError, match="messages"):  # the upstream's own 400, passed through
        await client.chat.completions.create(model=DEPLOYMENT, messages=[])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        await client.chat.completions.create(model=DEPLOYMENT, messages=[{"role": "user", "content": "x"}],
                                             temperature=7)
    assert await billed(stack, "alphaopenai", "contoso", "chat") == (0, 0, 0)
    assert stack.alpha.stats.succeeded == 0
    await client.close()


async def test_body_over_the_limit_is_413(tmp_path):
    async with gateway_stack(tmp_path, SIMS, Gateway={"MaxBodyBytes": 2048}, **OVERRIDES) as stack:
        client = azure(stack)
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model=DEPLOYMENT, messages=[{"role": "user", "content": "x" * 4000}])
        assert caught.value.status_code == 413 and "MaxBodyBytes" in caught.value.message
        await client.close()


async def test_all_instances_rate_limited_surfaces_as_rate_limit_error_with_retry_after(stack):
    for sim in (stack.alpha, stack.beta):
        sim.set_fault(status=429, retry_after_ms=2500, count=1)
    client = azure(stack, tenant="newcomer")  # unmapped: both instances are tried
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=DEPLOYMENT, messages=[{"role": "user", "content": "Hi"}])
    # The gateway answers at once with the time left until the soonest instance is back.
    assert 2000 <= int(caught.value.response.headers["retry-after-ms"]) <= 2500
    assert caught.value.response.headers["retry-after"] == "3"
    assert "rate limit" in caught.value.message
    assert stack.alpha.stats.throttled == stack.beta.stats.throttled == 1
    await client.close()


async def test_failover_to_the_next_instance_and_upstream_errors_pass_through(stack):
    stack.alpha.set_fault(status=503, count=1)
    client = azure(stack, tenant="newcomer")
    served = set()
    for _ in range(2):  # whichever instance round-robin picks first, the 503 fails over
        response = await client.chat.completions.with_raw_response.create(
            model=DEPLOYMENT, messages=[{"role": "user", "content": "Hi"}])
        served.add(response.headers["x-gateway-instance"])
    assert stack.alpha.stats.faults == 1 and "BetaOpenAI" in served
    stack.alpha.set_fault(status=500, count=1)
    mapped = azure(stack)  # contoso has only AlphaOpenAI: its 500 reaches the caller as Azure sent it
    with pytest.raises(openai.InternalServerError) as caught:
        await mapped.chat.completions.create(model=DEPLOYMENT, messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.status_code == 500 and "server had an error" in caught.value.message
    await client.close()
    await mapped.close()


async def test_stream_cut_mid_way_ends_with_an_error_the_sdk_raises_and_bills_what_was_seen(stack):
    stack.alpha.set_fault(drop=True, drop_after_chunks=6, count=1)
    client = azure(stack)
    stream = await client.chat.completions.create(
        model=DEPLOYMENT, messages=[{"role": "user", "content": "Stream please"}], stream=True)
    with pytest.raises(openai.APIError, match="dropped the stream"):
        async for _ in stream:
            pass
    prompt, completion, total = await billed(stack, "alphaopenai", "contoso", "stream")
    assert prompt > 0 and completion > 0 and total == prompt + completion  # tiktoken's count of what came
    samples = await stack.metrics()  # the break counts against the instance, as on /openai/stream
    assert samples[("gateway_upstream_failures_total", (("openai_name", "alphaopenai"), ("reason", "stream")))] == 1
    await client.close()


async def test_gateway_requests_are_counted_per_compat_route(stack):
    client = azure(stack)
    await client.chat.completions.create(model=DEPLOYMENT, messages=[{"role": "user", "content": "Hi"}])
    async with httpx.AsyncClient(base_url=stack.url) as raw:
        await raw.post("/openai/v1/embeddings", json={"model": "nope", "input": "x"}, headers={"X-Tenant": "a"})
    samples = await stack.metrics()
    assert samples[("gateway_requests_total", (("route", "compat_chat"), ("status", "200")))] == 1
    assert samples[("gateway_requests_total", (("route", "compat_embeddings"), ("status", "404")))] == 1
    await client.close()


async def test_responses_api_v1_and_azure_paths_json_and_stream_billed_exactly(stack):
    client = v1(stack)
    reply = await client.responses.create(model="chat", input="Tell me about Milan", instructions="Be brief")
    assert reply.output_text and reply.usage is not None  # "chat" was rewritten to the instance's deployment
    stream = await client.responses.create(model=DEPLOYMENT, input=[{"role": "user", "content": "Hi"}], stream=True)
    text, streamed = "", None
    async for event in stream:
        if event.type == "response.output_text.delta":
            text += event.delta
        elif event.type == "response.completed":
            streamed = event.response.usage
    assert text and streamed is not None
    azure_client = openai.AsyncAzureOpenAI(azure_endpoint=stack.url, api_key=CALLER_KEY,
                                           api_version="2025-04-01-preview", default_headers={"X-Tenant": "contoso"})
    again = await azure_client.responses.create(model=DEPLOYMENT, input="x")  # POST /openai/responses
    chat = (reply.usage.input_tokens + again.usage.input_tokens, reply.usage.output_tokens + again.usage.output_tokens)
    assert await billed(stack, "alphaopenai", "contoso", "chat") == (*chat, sum(chat))
    assert await billed(stack, "alphaopenai", "contoso", "stream") == (
        streamed.input_tokens, streamed.output_tokens, streamed.total_tokens)
    assert reported(stack, "AlphaOpenAI")[2] == sum(chat) + streamed.total_tokens
    with pytest.raises(openai.NotFoundError, match="gpt-9"):
        await client.responses.create(model="gpt-9", input="x")
    await client.close()
    await azure_client.close()


def test_a_gateway_decided_429_has_azures_shape_and_both_retry_headers():
    """What the limits work (issue 11) will raise: the SDK reads the message and retry-after-ms."""
    from core import RateLimited
    from http_api._compat import error_response

    response = error_response(RateLimited("tenant 'contoso' is over Limits:Tenants:contoso:TokensPerMinute", 2.5))
    assert response.status_code == 429
    assert (response.headers["retry-after"], response.headers["retry-after-ms"]) == ("3", "2500")
    assert json.loads(response.body) == {"error": {
        "code": "429", "message": "tenant 'contoso' is over Limits:Tenants:contoso:TokensPerMinute"}}


async def test_openapi_lists_the_compatible_routes(stack):
    document = (await stack.client.get("/openapi.json")).json()
    paths = document["paths"]
    for path in ("/openai/deployments/{deployment}/chat/completions", "/openai/deployments/{deployment}/embeddings",
                 "/openai/v1/chat/completions", "/openai/v1/embeddings", "/openai/v1/responses", "/openai/responses"):
        operation = paths[path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"]["type"] == "object"
        assert operation["responses"]["404"]["content"]["application/json"]["schema"]["properties"]["error"]
    names = [p["name"] for p in paths["/openai/deployments/{deployment}/chat/completions"]["post"]["parameters"]]
    assert names[:2] == ["deployment", "api-version"]


async def test_a_caller_leaving_mid_stream_closes_the_upstream_and_is_billed_for_what_it_got(tmp_path):
    slow = {**SIMS, "per_token_latency_ms": 30.0, "min_completion_tokens": 40, "max_completion_tokens": 50}
    async with gateway_stack(tmp_path, slow, **OVERRIDES) as stack:
        client = azure(stack)
        stream = await client.chat.completions.create(
            model=DEPLOYMENT, messages=[{"role": "user", "content": "Stream please"}], stream=True)
        seen = 0
        async for chunk in stream:
            seen += bool(chunk.choices and chunk.choices[0].delta.content)
            if seen == 3:
                break
        await stream.close()
        for _ in range(100):  # the gateway notices the caller left, then closes its upstream
            if stack.alpha.stats.aborted:
                break
            await asyncio.sleep(0.05)
        assert stack.alpha.stats.aborted == 1 and stack.alpha.stats.succeeded == 0
        prompt, completion, total = await billed(stack, "alphaopenai", "contoso", "stream")
        assert prompt > 0 and 0 < completion < 40 and total == prompt + completion  # tiktoken: what was relayed
        await client.close()


async def test_a_tenant_over_its_limit_gets_rate_limit_error_from_the_gateway_before_azure(tmp_path):
    """Tenant limits apply to the pass-through: the SDK raises RateLimitError with Retry-After and
    OpenAI's x-ratelimit-* headers, the refused request never reaches Azure, and tenant keys (the
    caller's api-key) decide the tenant when Auth:Mode is keys."""
    from auth_support import new_tenant_key

    key, hashed = new_tenant_key("acme")
    limits = {"Tenants": {"acme": {"RequestsPerMinute": 2}}, "WindowSeconds": 60}
    async with gateway_stack(tmp_path, SIMS, **OVERRIDES, Limits=limits,
                             Auth={"Mode": "keys", "Keys": {"acme": hashed}}) as stack:
        client = openai.AsyncAzureOpenAI(azure_endpoint=stack.url, api_key=key, api_version=VERSION, max_retries=0)
        for _ in range(2):
            answer = await client.chat.completions.with_raw_response.create(
                model=DEPLOYMENT, messages=[{"role": "user", "content": "Hi"}])
            assert answer.headers["x-ratelimit-limit-requests"] == "2"
        sent = stack.alpha.stats.requests + stack.beta.stats.requests
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(model=DEPLOYMENT, messages=[{"role": "user", "content": "Hi"}])
        assert int(refused.value.response.headers["retry-after"]) >= 1
        assert refused.value.response.headers["x-ratelimit-remaining-requests"] == "0"
        assert "limit" in refused.value.message.lower()
        assert stack.alpha.stats.requests + stack.beta.stats.requests == sent  # never reached Azure
        with pytest.raises(openai.AuthenticationError):
            await openai.AsyncAzureOpenAI(azure_endpoint=stack.url, api_key="not-a-tenant-key", api_version=VERSION,
                                          max_retries=0).chat.completions.create(
                model=DEPLOYMENT, messages=[{"role": "user", "content": "Hi"}])
        await client.close()


async def test_a_limited_tenant_sees_its_own_budget_not_the_instances_under_the_same_header_names(tmp_path):
    """Azure sends x-ratelimit-remaining-* for the instance; a limited tenant's answer carries its own
    budget under those names instead, once each (the instance's figures would mislead its backoff)."""
    limits = {"Tenants": {"acme": {"RequestsPerMinute": 5}}, "WindowSeconds": 60}
    async with gateway_stack(tmp_path, {**SIMS, "rpm": 1000, "tpm": 1_000_000}, **OVERRIDES, Limits=limits) as stack:
        client = openai.AsyncAzureOpenAI(azure_endpoint=stack.url, api_key="caller", api_version=VERSION,
                                         max_retries=0, default_headers={"X-Tenant": "acme"})
        answer = await client.chat.completions.with_raw_response.create(
            model=DEPLOYMENT, messages=[{"role": "user", "content": "Hi"}])
        assert answer.headers.get_list("x-ratelimit-remaining-requests") == ["4"]
        assert answer.headers.get_list("x-ratelimit-limit-requests") == ["5"]
        unlimited = openai.AsyncAzureOpenAI(azure_endpoint=stack.url, api_key="caller", api_version=VERSION,
                                            max_retries=0, default_headers={"X-Tenant": "zeta"})
        passed = await unlimited.chat.completions.with_raw_response.create(
            model=DEPLOYMENT, messages=[{"role": "user", "content": "Hi"}])
        assert int(passed.headers["x-ratelimit-remaining-requests"]) > 900  # the instance's own, passed through
        await client.close()
        await unlimited.close()
