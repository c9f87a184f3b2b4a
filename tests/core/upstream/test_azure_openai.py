"""The upstream adapter against the simulator through the real ``openai`` SDK."""

from __future__ import annotations

import pytest
from gateway_stack import DEPLOYMENT, start_simulator

from core import ChatMessage, RateLimited, UpstreamError, UpstreamUnavailable
from core.config import ChatCompletionsOptions, ServiceSettings
from core.upstream._azure_openai import AzureOpenAIUpstream

HELLO = (ChatMessage("user", "Hello there"),)


def service(url: str, **fields: object) -> ServiceSettings:
    values: dict[str, object] = {"endpoint": url, "api_key": "sim-key-alpha", "deployment": DEPLOYMENT,
                                 "max_retries": 0, "max_response_tokens": 50}
    values.update(fields)
    return ServiceSettings.model_validate(values)


@pytest.fixture
async def alpha():
    sim = await start_simulator("AlphaOpenAI")
    yield sim
    await sim.stop()


async def test_entra_type_sends_a_bearer_token_from_the_provider(alpha):
    """Entra ID is unreachable here: a stand-in token provider replaces azure-identity's
    ``get_bearer_token_provider``; what is checked is that the SDK sends its token, not a key."""
    asked: list[int] = []

    async def provider() -> str:
        asked.append(1)
        return "entra-token-stand-in"

    upstream = AzureOpenAIUpstream("AlphaOpenAI", service(alpha.url, type="azuread", api_key=""),
                                   ChatCompletionsOptions(), token_provider=provider)
    reply = await upstream.complete(HELLO, retry=False)
    await upstream.aclose()
    assert reply.text and reply.usage is not None and reply.usage.completion_tokens <= 50
    assert asked and alpha.stats.succeeded == 1


async def test_wrong_key_is_an_upstream_error_that_does_not_echo_the_key(alpha):
    upstream = AzureOpenAIUpstream("AlphaOpenAI", service(alpha.url, api_key="wrong-key-123"),
                                   ChatCompletionsOptions())
    with pytest.raises(UpstreamError) as caught:
        await upstream.complete(HELLO, retry=False)
    await upstream.aclose()
    assert "rejected the gateway's credentials" in caught.value.detail
    assert "wrong-key-123" not in caught.value.detail


async def test_429_carries_retry_after_ms_and_503_is_unavailable(alpha):
    upstream = AzureOpenAIUpstream("AlphaOpenAI", service(alpha.url), ChatCompletionsOptions())
    alpha.set_fault(status=429, retry_after_ms=1500, count=1)
    with pytest.raises(RateLimited) as limited:
        await upstream.complete(HELLO, retry=False)
    alpha.set_fault(status=503, count=1)
    with pytest.raises(UpstreamUnavailable):
        await upstream.complete(HELLO, retry=False)
    await upstream.aclose()
    assert limited.value.retry_after == 1.5


async def test_retries_honour_retry_after_ms_then_succeed(alpha):
    upstream = AzureOpenAIUpstream("AlphaOpenAI", service(alpha.url, max_retries=2), ChatCompletionsOptions())
    alpha.set_fault(status=429, retry_after_ms=50, count=2)
    reply = await upstream.complete(HELLO, retry=True)
    await upstream.aclose()
    assert reply.text
    assert alpha.stats.status_counts.get("429") == 2 and alpha.stats.succeeded == 1


async def test_chat_options_reach_the_upstream_request(alpha):
    options = ChatCompletionsOptions(temperature=0.1, stop_sequences=("zzz",))
    upstream = AzureOpenAIUpstream("AlphaOpenAI", service(alpha.url, max_response_tokens=5), options)
    reply = await upstream.complete(HELLO, retry=False)
    await upstream.aclose()
    assert reply.usage is not None and reply.usage.completion_tokens <= 5
