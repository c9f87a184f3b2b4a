"""Token counters scraped from the host's /metrics equal the simulator's reported usage exactly."""

from __future__ import annotations

from collections import defaultdict

import aiohttp
from grpc_support import Sims, chat_request
from prometheus_client.parser import text_string_to_metric_families

from grpc_host import RunningHost
from protos import openai_pb2_grpc
from simulator import TokenTotals

Stub = openai_pb2_grpc.OpenAIServiceGrpcStub
Key = tuple[str, str]  # (openai_name, tenant_name)


async def scrape(host: RunningHost) -> dict[Key, list[float]]:
    """openai_{prompt,completion,total}_tokens_total summed over method_name."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{host.metrics_port}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
    totals: dict[Key, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    kinds = {"openai_prompt_tokens": 0, "openai_completion_tokens": 1, "openai_total_tokens": 2}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.removesuffix("_total") in kinds and sample.name.endswith("_total"):
                key = (sample.labels["openai_name"], sample.labels["tenant_name"])
                totals[key][kinds[sample.name.removesuffix("_total")]] += sample.value
    return dict(totals)


def minus(after: TokenTotals, before: TokenTotals) -> list[float]:
    return [
        float(after.prompt_tokens - before.prompt_tokens),
        float(after.completion_tokens - before.completion_tokens),
        float(after.total_tokens - before.total_tokens),
    ]


async def run_mix(stub: Stub, tenant: str, rounds: int) -> None:
    for i in range(rounds):
        request = chat_request(tenant, ("user", f"Question {i} from {tenant}: what is a token?"))
        assert (await stub.GetChatCompletions(request)).result
        assert [m async for m in stub.GetChatCompletionsStreaming(request)]


async def test_token_counters_equal_the_simulators_usage_per_tenant_and_instance(
    stub: Stub, sims: Sims, host: RunningHost
) -> None:
    expected: dict[Key, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    # One tenant at a time, so each instance's usage delta belongs to exactly one tenant.
    for tenant, rounds in (("contoso", 3), ("fabrikam", 2), ("acme", 4)):  # acme: round-robin
        before = {name: sim.stats.reported for name, sim in sims.by_name().items()}
        await run_mix(stub, tenant, rounds)
        for name, sim in sims.by_name().items():
            delta = minus(sim.stats.reported, before[name])
            if any(delta):
                old = expected[(name, tenant)]
                expected[(name, tenant)] = [a + b for a, b in zip(old, delta, strict=True)]

    assert sims.alpha.stats.succeeded + sims.beta.stats.succeeded == 2 * (3 + 2 + 4)
    assert {k[1] for k in expected} == {"contoso", "fabrikam", "acme"}
    assert ("alphaopenai", "acme") in expected and ("betaopenai", "acme") in expected
    assert await scrape(host) == dict(expected)
