"""Stats and reset (`/_sim/stats`, `/_sim/reset`), latency settings and the CLI process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import openai
import orjson
import pytest

from simulator import SimulatorServer

DEPLOYMENT = "gpt-35-turbo-16k"
MESSAGES = [{"role": "user", "content": "Count my tokens"}]
REPO = Path(__file__).resolve().parents[2]


async def _get_stats(sim: SimulatorServer) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sim.url}_sim/stats") as response:
            assert response.status == 200
            return await response.json()


async def test_stats_sum_exactly_what_usage_reported(sim: SimulatorServer, client) -> None:
    a = await client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
    b = await client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES, max_tokens=3)
    stream = await client.chat.completions.create(
        model=DEPLOYMENT, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    streamed = [chunk.usage async for chunk in stream if chunk.usage is not None]
    silent = await client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES, stream=True)
    silent_text = "".join([c.choices[0].delta.content or "" async for c in silent if c.choices])
    assert a.usage is not None and b.usage is not None and len(streamed) == 1

    stats = await _get_stats(sim)
    reported = [a.usage, b.usage, streamed[0]]
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        expected = sum(getattr(u, key) for u in reported)
        assert stats["reported"][key] == expected
        assert stats["deployments"][DEPLOYMENT]["reported"][key] == expected
    assert stats["generated"]["prompt_tokens"] == 4 * a.usage.prompt_tokens
    assert stats["generated"]["completion_tokens"] > stats["reported"]["completion_tokens"]
    assert silent_text
    assert stats["requests"] == stats["succeeded"] == 4
    assert stats["name"] == "AlphaOpenAI"
    assert sim.stats.to_dict() == stats


async def test_reset_zeroes_the_stats(sim: SimulatorServer, client) -> None:
    await client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sim.url}_sim/reset") as response:
            assert response.status == 200
    stats = await _get_stats(sim)
    assert stats["requests"] == 0 and stats["reported"]["total_tokens"] == 0 and stats["deployments"] == {}


async def test_rejected_requests_are_counted_without_tokens(sim: SimulatorServer, make_client) -> None:
    with pytest.raises(openai.AuthenticationError):
        await make_client(sim, api_key="bad").chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
    stats = sim.stats
    assert stats.requests == 1 and stats.status_counts == {"401": 1}
    assert stats.generated.total_tokens == 0


async def test_latency_settings_still_serve_correct_streams(start_sim, make_client, tokens) -> None:
    sim = await start_sim(latency_ms=5.0, per_token_latency_ms=1.0)
    stream = await make_client(sim).chat.completions.create(
        model=DEPLOYMENT, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    text, usage = "", None
    async for chunk in stream:
        usage = chunk.usage or usage
        text += "".join(c.delta.content or "" for c in chunk.choices)
    assert usage is not None and usage.completion_tokens == tokens.count(text)


def test_cli_serves_until_sigterm_and_never_logs_the_key(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "simulator", "--instances", "AlphaOpenAI:0,BetaOpenAI:0",
               "--api-key", "very-secret-key", "--deployment", "gpt-35-turbo-16k", "--seed", "1"]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        lines = [process.stderr.readline() for _ in range(2)]
        urls = [re.search(r"ready at (http://\S+)", line) for line in lines]
        assert all(urls), lines

        async def ask(url: str) -> str:
            async with openai.AsyncAzureOpenAI(
                azure_endpoint=url, api_key="very-secret-key", api_version="2024-06-01", max_retries=0
            ) as sdk:
                result = await sdk.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
                return result.choices[0].message.content or ""

        texts = [asyncio.run(ask(match.group(1))) for match in urls if match]
        assert texts[0] == texts[1], "same seed, same messages: same text on both instances"
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "very-secret-key" not in "".join(lines) + rest


def test_cli_help_documents_the_options() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "--help"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    for option in ("--port", "--api-key", "--deployment", "--tpm", "--rpm", "--zero-latency", "--instances"):
        assert option in result.stdout


def test_cli_rejects_bad_configuration() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "--instances", "NoPort"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--instances" in result.stderr


def test_cli_json_config_file(tmp_path: Path) -> None:
    config = {
        "instances": [
            {
                "name": "GammaOpenAI",
                "port": 0,
                "api_key": "gamma-key",
                "seed": 3,
                "deployments": [{"name": "chat", "model": "gpt-4o", "rpm": 5}],
                "faults": [{"status": 503, "count": 1}],
            }
        ]
    }
    path = tmp_path / "sim.json"
    path.write_bytes(orjson.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--config", str(path)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"GammaOpenAI ready at (http://\S+)", line)
        assert match, line

        async def ask(url: str) -> tuple[int, str]:
            async with openai.AsyncAzureOpenAI(
                azure_endpoint=url, api_key="gamma-key", api_version="2024-06-01", max_retries=1
            ) as sdk:
                raw = await sdk.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
                return raw.status_code, raw.parse().model

        assert asyncio.run(ask(match.group(1))) == (200, "gpt-4o"), "after the configured 503, a retry works"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)
    assert process.returncode == 0
