"""Fault injection through the control API (`/_sim/faults`) and the Python API."""

from __future__ import annotations

import itertools
import time
from email.utils import parsedate_to_datetime

import aiohttp
import openai
import pytest

from simulator import FaultSpec, SimulatorServer

DEPLOYMENT = "gpt-35-turbo-16k"
MESSAGES = [{"role": "user", "content": "Hello there"}]


async def _control(sim: SimulatorServer, method: str, path: str, body: object = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{sim.url}{path}", json=body) as response:
            return response.status, await response.json()


async def _ask(sdk: openai.AsyncAzureOpenAI) -> str:
    result = await sdk.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
    return result.choices[0].message.content or ""


async def test_status_fault_for_the_next_n_requests(sim: SimulatorServer, client) -> None:
    status, body = await _control(sim, "POST", "_sim/faults", {"status": 503, "count": 2})
    assert status == 200 and body["faults"][0]["remaining"] == 2

    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as caught:
            await _ask(client)
        assert caught.value.status_code == 503
        assert caught.value.body["code"] == "ServiceUnavailable"
    assert await _ask(client)
    assert sim.stats.faults == 2


async def test_fault_429_carries_retry_after_ms(sim: SimulatorServer, client) -> None:
    sim.set_fault(FaultSpec(status=429, count=1, retry_after_ms=1500))
    with pytest.raises(openai.RateLimitError) as caught:
        await _ask(client)
    assert caught.value.response.headers["retry-after-ms"] == "1500"
    assert caught.value.response.headers["retry-after"] == "2"


@pytest.mark.parametrize(("style", "present", "absent"), [
    ("ms", {"retry-after-ms": "2500"}, ("retry-after",)),
    ("seconds", {"retry-after": "3"}, ("retry-after-ms",)),
    ("reset", {"x-ratelimit-reset-requests": "2500ms", "x-ratelimit-reset-tokens": "2500ms"},
     ("retry-after", "retry-after-ms")),
])
async def test_fault_429_in_each_header_style(sim: SimulatorServer, client, style, present, absent) -> None:
    sim.set_fault(status=429, count=1, retry_after_ms=2500, retry_style=style)
    with pytest.raises(openai.RateLimitError) as caught:
        await _ask(client.with_options(max_retries=0))
    headers = caught.value.response.headers
    assert {k: headers.get(k) for k in present} == present
    assert not any(k in headers for k in absent)


async def test_fault_429_retry_after_as_an_http_date(sim: SimulatorServer, client) -> None:
    sim.set_fault(status=429, count=1, retry_after_ms=4000, retry_style="date")
    with pytest.raises(openai.RateLimitError) as caught:
        await _ask(client.with_options(max_retries=0))
    when = parsedate_to_datetime(caught.value.response.headers["retry-after"])
    assert 2 <= when.timestamp() - time.time() <= 4 and "retry-after-ms" not in caught.value.response.headers


async def test_stall_holds_a_stream_after_k_events(sim: SimulatorServer, client) -> None:
    sim.set_fault(stall_ms=600, stall_after_chunks=2, count=1)
    stream = await client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES, stream=True)
    arrivals = [time.perf_counter() async for _ in stream]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert max(gaps) >= 0.5 and gaps.index(max(gaps)) == 1  # the wait sits after the 2nd event
    assert sim.stats.aborted == 0  # then it finishes normally


async def test_unknown_retry_style_is_refused(sim: SimulatorServer) -> None:
    status, body = await _control(sim, "POST", "_sim/faults", {"status": 429, "retry_style": "minutes"})
    assert status == 400 and "retry_style" in body["error"]["message"]


async def test_fault_without_count_lasts_until_cleared(sim: SimulatorServer, client) -> None:
    await _control(sim, "POST", "_sim/faults", {"status": 500})
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            await _ask(client)
    status, body = await _control(sim, "DELETE", "_sim/faults")
    assert status == 200 and body["faults"] == []
    assert await _ask(client)


async def test_delay_fault_makes_the_client_time_out(sim: SimulatorServer, make_client) -> None:
    sim.set_fault(delay_ms=1500, count=1)
    sdk = make_client(sim, timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        await _ask(sdk)
    assert await _ask(make_client(sim))


async def test_drop_closes_the_connection_without_response(sim: SimulatorServer, client) -> None:
    await _control(sim, "POST", "_sim/faults", {"drop": True, "count": 1})
    with pytest.raises(openai.APIConnectionError):
        await _ask(client)
    assert await _ask(client), "the next request is served again"
    assert sim.stats.faults == 1


async def test_stream_drop_after_chunks(sim: SimulatorServer, client) -> None:
    sim.set_fault(drop=True, drop_after_chunks=4, count=1)
    stream = await client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 4, "the stream broke after the configured number of events"
    assert sim.stats.aborted == 1
    assert sim.stats.generated.total_tokens == 0, "an unfinished stream produces no usage"


async def test_fault_for_one_deployment_only(start_sim, make_client) -> None:
    from simulator import DeploymentConfig

    sim = await start_sim(deployments=(DeploymentConfig(name=DEPLOYMENT), DeploymentConfig(name="gpt-4o")))
    sdk = make_client(sim)
    sim.set_fault(status=503, deployment="gpt-4o")
    assert await _ask(sdk)
    with pytest.raises(openai.InternalServerError):
        await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES)


async def test_faults_from_config_and_bad_fault_rejected(start_sim, make_client) -> None:
    sim = await start_sim(faults=(FaultSpec(status=502, count=1),))
    with pytest.raises(openai.APIStatusError) as caught:
        await _ask(make_client(sim))
    assert caught.value.status_code == 502
    status, body = await _control(sim, "POST", "_sim/faults", {"status": 200})
    assert status == 400 and "status" in body["error"]["message"]
    status, _ = await _control(sim, "POST", "_sim/faults", {"bogus": 1})
    assert status == 400
