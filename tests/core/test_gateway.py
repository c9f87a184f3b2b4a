"""The gateway through its upstream seam: fake instances that implement ``core.upstream.Upstream``.

Fast and in-process; the same behaviour over real HTTP through the aiohttp upstream is covered by
tests/http_api and tests/grpc_host against the simulator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from core import ChatMessage, Gateway, InvalidRequest, RateLimited, Usage, build_gateway
from core.config import ServiceSettings, Settings, validate_settings
from core.state import MemoryStateStore
from core.upstream import StreamEvent, UpstreamReply

USER = (ChatMessage("user", "Tell me about Milan"),)
REPORTED = Usage(11, 22)


class FakeUpstream:
    """One instance: answers ``text`` with ``usage`` (None: like an upstream that sends none)."""

    def __init__(self, name: str, settings: ServiceSettings, *, usage: Usage | None, limited: bool) -> None:
        self.name = name
        self.settings = settings
        self.usage = usage
        self.limited = limited
        self.prompts: list[tuple[ChatMessage, ...]] = []
        self.closed_streams = 0

    async def complete(self, messages: Sequence[ChatMessage]) -> UpstreamReply:
        self.prompts.append(tuple(messages))
        if self.limited:
            raise RateLimited(f"instance {self.name} is limited", 7.0)
        return UpstreamReply(f"answer from {self.name}", self.usage)

    async def open_stream(self, messages: Sequence[ChatMessage]) -> FakeStream:
        self.prompts.append(tuple(messages))
        if self.limited:
            raise RateLimited(f"instance {self.name} is limited", 7.0)
        return FakeStream(self, ["Mil", "an is", " nice"])

    async def aclose(self) -> None:
        return None


class FakeStream:
    def __init__(self, upstream: FakeUpstream, parts: list[str]) -> None:
        self._upstream = upstream
        self._parts = parts

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        for part in self._parts:
            yield StreamEvent(text=part)
        if self._upstream.usage is not None:
            yield StreamEvent(usage=self._upstream.usage)

    async def aclose(self) -> None:
        self._upstream.closed_streams += 1


def _gateway(
    *, usage: Usage | None = REPORTED, limited: tuple[str, ...] = (), **tree: Any
) -> tuple[Gateway, dict[str, FakeUpstream], CollectorRegistry]:
    services = {name: {"Endpoint": f"https://{name}.example", "ApiKey": "k", "Deployment": "d"}
                for name in ("Alpha", "Beta")}
    settings: Settings = validate_settings({"AzureOpenAI": {"SystemPrompt": "Be brief.", "Services": services},
                                            **tree})
    fakes: dict[str, FakeUpstream] = {}

    def factory(name: str, service: ServiceSettings, _: Settings) -> FakeUpstream:
        fakes[name] = FakeUpstream(name, service, usage=usage, limited=name in limited)
        return fakes[name]

    registry = CollectorRegistry()
    gateway = build_gateway(settings, registry=registry, state_store=MemoryStateStore(), upstream_factory=factory)
    return gateway, fakes, registry


def _billed(registry: CollectorRegistry, tenant: str, kind: str = "total", method: str = "chat") -> float:
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if (sample.name == f"openai_{kind}_tokens_total" and sample.labels["tenant_name"] == tenant
                    and sample.labels["method_name"] == method):
                total += sample.value
    return total


async def test_chat_bills_the_reported_usage_to_the_tenant() -> None:
    gateway, _, registry = _gateway()
    completion = await gateway.chat("acme", USER)
    assert completion.usage == Usage(11, 22) and completion.usage_reported
    assert completion.text == f"answer from {completion.instance}"
    assert _billed(registry, "acme") == 33


async def test_without_reported_usage_the_gateway_counts_and_says_so() -> None:
    gateway, _, registry = _gateway(usage=None)
    completion = await gateway.chat("acme", USER)
    assert not completion.usage_reported
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert _billed(registry, "acme") == completion.usage.total_tokens


async def test_the_system_prompt_is_prepended_when_the_caller_sent_none() -> None:
    gateway, fakes, _ = _gateway()
    completion = await gateway.chat("acme", USER)
    assert fakes[completion.instance].prompts[-1] == (ChatMessage("system", "Be brief."), *USER)


async def test_a_limited_instance_fails_over_and_cools_down() -> None:
    gateway, fakes, registry = _gateway(limited=("Alpha",))
    served = [(await gateway.chat("acme", USER)).instance for _ in range(4)]
    assert served == ["Beta"] * 4
    assert len(fakes["Alpha"].prompts) == 1  # tried once, then left alone while it cools
    assert registry.get_sample_value(
        "gateway_upstream_failures_total", {"openai_name": "alpha", "reason": "rate_limited"}
    ) == 1


async def test_a_tenant_mapped_to_a_limited_instance_gets_its_retry_after() -> None:
    gateway, _, _ = _gateway(limited=("Alpha",), TenantAzureOpenAIMappings={"contoso": "Alpha"})
    with pytest.raises(RateLimited) as caught:
        await gateway.chat("contoso", USER)
    assert caught.value.retry_after == pytest.approx(7.0, abs=0.5)  # the time left of its cool-down


async def test_a_stream_is_billed_once_however_it_ends() -> None:
    gateway, fakes, registry = _gateway()
    stream = await gateway.open_stream("acme", USER)
    assert [delta async for delta in stream] == ["Mil", "an is", " nice"]
    await stream.aclose()
    await stream.aclose()
    assert stream.completion is not None and stream.completion.text == "Milan is nice"
    assert _billed(registry, "acme", method="stream") == 33
    assert fakes[stream.instance].closed_streams == 1


async def test_a_stream_the_client_leaves_early_is_still_billed() -> None:
    gateway, _, registry = _gateway(usage=None)
    stream = await gateway.open_stream("acme", USER)
    async for _ in stream:
        break
    await stream.aclose()
    assert stream.completion is not None and stream.completion.text == "Mil"
    assert _billed(registry, "acme", method="stream") == stream.completion.usage.total_tokens > 0


def test_conversation_validation_uses_max_messages() -> None:
    gateway, _, _ = _gateway(Gateway={"MaxMessages": 2})
    assert gateway.conversation([{"role": "user", "content": "hi"}]) == (ChatMessage("user", "hi"),)
    with pytest.raises(InvalidRequest, match="2"):
        gateway.conversation([{"role": "user", "content": "hi"}] * 3)


def test_metrics_exposition_follows_prometheus_enabled() -> None:
    on, _, _ = _gateway()
    off, _, _ = _gateway(Prometheus={"Enabled": False})
    assert b"gateway_requests_total" in (on.metrics_exposition() or b"")
    assert off.metrics_exposition() is None
