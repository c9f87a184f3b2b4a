"""Per-deployment TPM / RPM limits: 429 with Azure's headers, seen through the `openai` SDK."""

from __future__ import annotations

import math

import openai
import pytest

DEPLOYMENT = "gpt-35-turbo-16k"
MESSAGES = [{"role": "user", "content": "Hello there"}]


async def test_rpm_limit_gives_429_with_retry_headers(start_sim, make_client) -> None:
    sim = await start_sim(rpm=2)
    sdk = make_client(sim)
    first = await sdk.chat.completions.with_raw_response.create(model=DEPLOYMENT, messages=MESSAGES)
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    await sdk.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)

    with pytest.raises(openai.RateLimitError) as caught:
        await sdk.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)

    headers = caught.value.response.headers
    retry_ms = int(headers["retry-after-ms"])
    assert 0 < retry_ms <= 60_000
    assert int(headers["retry-after"]) == math.ceil(retry_ms / 1000)
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert caught.value.body["code"] == "429"
    assert "call rate limit" in caught.value.body["message"]
    assert sim.stats.throttled == 1
    assert sim.stats.deployments[DEPLOYMENT].status_counts == {"200": 2, "429": 1}


async def test_tpm_limit_counts_prompt_plus_max_tokens(start_sim, make_client, tokens) -> None:
    sim = await start_sim(tpm=100)
    sdk = make_client(sim)
    prompt = tokens.prompt(MESSAGES)
    ok = await sdk.chat.completions.with_raw_response.create(
        model=DEPLOYMENT, messages=MESSAGES, max_tokens=50
    )
    assert ok.headers["x-ratelimit-remaining-tokens"] == str(100 - prompt - 50)

    with pytest.raises(openai.RateLimitError) as caught:
        await sdk.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES, max_tokens=50)

    assert "token rate limit" in caught.value.body["message"]
    assert int(caught.value.response.headers["retry-after-ms"]) > 0
    small = await sdk.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES, max_tokens=5)
    assert small.usage is not None and small.usage.completion_tokens <= 5, "what still fits is served"


async def test_tpm_without_max_tokens_uses_the_completion_length(start_sim, make_client) -> None:
    sim = await start_sim(tpm=10_000)
    sdk = make_client(sim)
    raw = await sdk.chat.completions.with_raw_response.create(model=DEPLOYMENT, messages=MESSAGES)
    usage = raw.parse().usage
    assert usage is not None
    assert raw.headers["x-ratelimit-remaining-tokens"] == str(10_000 - usage.total_tokens)


async def test_sdk_retries_after_retry_after_ms(start_sim, make_client) -> None:
    sim = await start_sim()
    sim.set_fault(status=429, count=1, retry_after_ms=50)
    sdk = make_client(sim, max_retries=2)

    result = await sdk.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)

    assert result.choices[0].message.content
    assert sim.stats.requests == 2
    assert sim.stats.status_counts == {"429": 1, "200": 1}


async def test_reset_empties_the_rate_limit_window(start_sim, make_client) -> None:
    sim = await start_sim(rpm=1)
    sdk = make_client(sim)
    await sdk.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
    with pytest.raises(openai.RateLimitError):
        await sdk.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
    sim.reset_stats()
    await sdk.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
