"""The upstream adapter against the simulator through the real ``openai`` SDK."""

from __future__ import annotations

import pytest
from gateway_stack import DEPLOYMENT, start_simulator

from core import (
    ChatMessage,
    InvalidRequest,
    RateLimited,
    UpstreamError,
    UpstreamMisconfigured,
    UpstreamTimeout,
    UpstreamUnavailable,
)
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
    reply = await upstream.complete(HELLO)
    await upstream.aclose()
    assert reply.text and reply.usage is not None and reply.usage.completion_tokens <= 50
    assert asked and alpha.stats.succeeded == 1


async def test_wrong_key_is_an_upstream_error_that_does_not_echo_the_key(alpha):
    upstream = AzureOpenAIUpstream("AlphaOpenAI", service(alpha.url, api_key="wrong-key-123"),
                                   ChatCompletionsOptions())
    with pytest.raises(UpstreamError) as caught:
        await upstream.complete(HELLO)
    await upstream.aclose()
    assert "rejected the gateway's credentials" in caught.value.detail
    assert "wrong-key-123" not in caught.value.detail


async def test_429_carries_retry_after_ms_and_503_is_unavailable(alpha):
    upstream = AzureOpenAIUpstream("AlphaOpenAI", service(alpha.url), ChatCompletionsOptions())
    alpha.set_fault(status=429, retry_after_ms=1500, count=1)
    with pytest.raises(RateLimited) as limited:
        await upstream.complete(HELLO)
    alpha.set_fault(status=503, count=1)
    with pytest.raises(UpstreamUnavailable):
        await upstream.complete(HELLO)
    await upstream.aclose()
    assert limited.value.retry_after == 1.5


async def test_one_attempt_whatever_max_retries_the_gateway_owns_retries(alpha):
    upstream = AzureOpenAIUpstream("AlphaOpenAI", service(alpha.url, max_retries=3), ChatCompletionsOptions())
    alpha.set_fault(status=429, retry_after_ms=50, count=2)
    with pytest.raises(RateLimited):
        await upstream.complete(HELLO)
    await upstream.aclose()
    assert alpha.stats.status_counts.get("429") == 1 and alpha.stats.succeeded == 0


@pytest.mark.parametrize(("style", "expected"), [("ms", 2.5), ("seconds", 3.0), ("both", 2.5),
                                                 ("reset", 2.5), ("date", 3.0)])
async def test_429_cooldown_from_every_header_style(alpha, style, expected):
    upstream = AzureOpenAIUpstream("AlphaOpenAI", service(alpha.url), ChatCompletionsOptions())
    alpha.set_fault(status=429, retry_after_ms=2500, retry_style=style, count=1)
    with pytest.raises(RateLimited) as limited:
        await upstream.complete(HELLO)
    await upstream.aclose()
    assert limited.value.retry_after is not None
    assert expected - 1.1 <= limited.value.retry_after <= expected  # an HTTP date has 1 s resolution


async def test_wrong_key_and_missing_deployment_name_the_setting(alpha):
    bad_key = AzureOpenAIUpstream("AlphaOpenAI", service(alpha.url, api_key="wrong-key-123"),
                                  ChatCompletionsOptions())
    no_deployment = AzureOpenAIUpstream("AlphaOpenAI", service(alpha.url, deployment="nope"),
                                        ChatCompletionsOptions())
    with pytest.raises(UpstreamMisconfigured) as key:
        await bad_key.complete(HELLO)
    with pytest.raises(UpstreamMisconfigured) as deployment:
        await no_deployment.complete(HELLO)
    await bad_key.aclose()
    await no_deployment.aclose()
    assert key.value.setting == "AzureOpenAI:Services:AlphaOpenAI:ApiKey" and key.value.instance_fault
    assert deployment.value.setting == "AzureOpenAI:Services:AlphaOpenAI:Deployment"


async def test_400_about_a_gateway_setting_names_it_and_400_about_the_conversation_stays_400(alpha):
    five_stops = ChatCompletionsOptions(stop_sequences=("a1", "b2", "c3", "d4", "e5"))
    upstream = AzureOpenAIUpstream("AlphaOpenAI", service(alpha.url), five_stops)
    with pytest.raises(UpstreamMisconfigured) as setting:
        await upstream.complete(HELLO)
    await upstream.aclose()
    assert setting.value.setting == "ChatCompletionsOptions:StopSequences"
    assert not setting.value.instance_fault  # shared by every instance: nobody leaves rotation
    plain = AzureOpenAIUpstream("AlphaOpenAI", service(alpha.url), ChatCompletionsOptions())
    with pytest.raises(InvalidRequest):
        await plain.complete((ChatMessage("caller-made-up-role", "x"),))  # type: ignore[arg-type]
    await plain.aclose()


async def test_a_stalled_stream_ends_in_a_timeout_not_a_hang(alpha):
    upstream = AzureOpenAIUpstream("AlphaOpenAI", service(alpha.url, timeout_seconds=0.3),
                                   ChatCompletionsOptions())
    alpha.set_fault(stall_ms=3000, stall_after_chunks=2, count=1)
    stream = await upstream.open_stream(HELLO)
    with pytest.raises(UpstreamTimeout) as stalled:
        async for _ in stream:
            pass
    await stream.aclose()
    await upstream.aclose()
    assert "stalled" in stalled.value.detail and "TimeoutSeconds" in stalled.value.detail


async def test_chat_options_reach_the_upstream_request(alpha):
    options = ChatCompletionsOptions(temperature=0.1, stop_sequences=("zzz",))
    upstream = AzureOpenAIUpstream("AlphaOpenAI", service(alpha.url, max_response_tokens=5), options)
    reply = await upstream.complete(HELLO)
    await upstream.aclose()
    assert reply.usage is not None and reply.usage.completion_tokens <= 5
