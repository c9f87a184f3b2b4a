"""Helpers and fixtures for the gRPC host tests: real simulators on 127.0.0.1:0, the real host.

Instances: contoso -> AlphaOpenAI, fabrikam -> BetaOpenAI, every other tenant round-robin.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry
from secret_scan import record_output

from core import Settings, load_settings
from grpc_host import GrpcHostSettings, RunningHost, start_host
from protos import openai_pb2, openai_pb2_grpc
from simulator import DeploymentConfig, SimulatorConfig, SimulatorServer, run_simulator

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENT = "gpt-35-turbo-16k"
KEYS = {"AlphaOpenAI": "sim-key-alpha", "BetaOpenAI": "sim-key-beta"}
READY = re.compile(r"gRPC host listening on 127\.0\.0\.1:(\d+) \(metrics on http://127\.0\.0\.1:(\d+)/metrics\)")


@dataclass
class Sims:
    alpha: SimulatorServer
    beta: SimulatorServer

    def by_name(self) -> dict[str, SimulatorServer]:
        return {"alphaopenai": self.alpha, "betaopenai": self.beta}


def sim_config(name: str, **overrides: Any) -> SimulatorConfig:
    values: dict[str, Any] = {
        "name": name,
        "api_key": KEYS[name],
        "deployments": (DeploymentConfig(name=DEPLOYMENT, model=DEPLOYMENT),),
        "seed": 7,
        "zero_latency": True,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


def gateway_environ(sims: Sims, **extra: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, server in (("AlphaOpenAI", sims.alpha), ("BetaOpenAI", sims.beta)):
        prefix = f"AzureOpenAI__Services__{name}__"
        env[prefix + "Endpoint"] = server.url
        env[prefix + "ApiKey"] = KEYS[name]
        env[prefix + "Deployment"] = DEPLOYMENT
        env[prefix + "Model"] = DEPLOYMENT
        env[prefix + "MaxRetries"] = "0"
    env["TenantAzureOpenAIMappings__contoso"] = "AlphaOpenAI"
    env["TenantAzureOpenAIMappings__fabrikam"] = "BetaOpenAI"
    env.update(extra)
    return env


def gateway_json(sims: Sims) -> dict[str, Any]:
    """The same settings as a JSON file for ``python -m grpc_host --config``."""
    services = {
        name: {"Endpoint": server.url, "ApiKey": KEYS[name], "Deployment": DEPLOYMENT, "MaxRetries": 0}
        for name, server in (("AlphaOpenAI", sims.alpha), ("BetaOpenAI", sims.beta))
    }
    return {
        "AzureOpenAI": {"Services": services},
        "TenantAzureOpenAIMappings": {"contoso": "AlphaOpenAI", "fabrikam": "BetaOpenAI"},
    }


StartSims = Callable[..., Awaitable[Sims]]


@pytest.fixture
async def start_sims() -> AsyncIterator[StartSims]:
    servers: list[SimulatorServer] = []

    async def start(**overrides: Any) -> Sims:
        alpha = await run_simulator(sim_config("AlphaOpenAI", **overrides), host="127.0.0.1", port=0)
        servers.append(alpha)
        beta = await run_simulator(sim_config("BetaOpenAI", **overrides), host="127.0.0.1", port=0)
        servers.append(beta)
        return Sims(alpha, beta)

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def sims(start_sims: StartSims) -> Sims:
    return await start_sims()


StartHost = Callable[[Settings], Awaitable[RunningHost]]


@pytest.fixture
async def start_grpc_host() -> AsyncIterator[StartHost]:
    """Start the real host in this event loop on free loopback ports; drained after the test."""
    hosts: list[RunningHost] = []

    async def start(settings: Settings) -> RunningHost:
        host = await start_host(
            settings, GrpcHostSettings(port=0, metrics_port=0, grace_seconds=1), registry=CollectorRegistry()
        )
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        await host.shutdown(0)


@pytest.fixture
async def host(sims: Sims, start_grpc_host: StartHost) -> RunningHost:
    return await start_grpc_host(load_settings(environ=gateway_environ(sims)))


@pytest.fixture
async def channel(host: RunningHost) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> openai_pb2_grpc.OpenAIServiceGrpcStub:
    return openai_pb2_grpc.OpenAIServiceGrpcStub(channel)


def chat_request(tenant: str = "", *turns: tuple[str, str]) -> openai_pb2.GetChatCompletionsRequest:
    conversation = [openai_pb2.GrpcMessage(role=r, content=c) for r, c in turns or (("user", "Hello"),)]
    return openai_pb2.GetChatCompletionsRequest(tenant=tenant, conversation=conversation)


@dataclass
class HostProcess:
    process: asyncio.subprocess.Process
    port: int
    metrics_port: int
    log: list[str]
    drain: asyncio.Task[None]

    async def wait(self) -> int:
        """The exit code; the host must exit within a minute."""
        async with asyncio.timeout(60):
            code = await self.process.wait()
            await self.drain
        return code


async def _drain(stream: asyncio.StreamReader, log: list[str]) -> None:
    """Keep reading the host's log so it never blocks on a full pipe."""
    while line := await stream.readline():
        log.append(line.decode())


@pytest.fixture
async def host_process(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[HostProcess]]]:
    """``python -m grpc_host`` as a real process; killed by PID if a test leaves it running."""
    started: list[HostProcess] = []

    async def spawn(settings_json: dict[str, Any], *args: str) -> HostProcess:
        config = tmp_path / "gateway.json"
        config.write_text(json.dumps(settings_json), encoding="utf-8")
        own = ("grpchost__", "azureopenai__", "tenantazureopenaimappings__")
        env = {k: v for k, v in os.environ.items() if not k.lower().startswith(own)}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "grpc_host", "--config", str(config), "--port", "0", "--metrics-port", "0",
            *args, cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        log: list[str] = []
        assert process.stderr is not None
        for _ in range(200):  # bounded: the ready line comes within a few log lines
            line = (await asyncio.wait_for(process.stderr.readline(), timeout=30)).decode()
            if not line:
                raise AssertionError("grpc_host exited before listening:\n" + "".join(log))
            log.append(line)
            match = READY.search(line)
            if match:
                drain = asyncio.create_task(_drain(process.stderr, log))
                item = HostProcess(process, int(match[1]), int(match[2]), log, drain)
                started.append(item)
                return item
        raise AssertionError("grpc_host never logged its ready line:\n" + "".join(log))

    yield spawn
    for item in started:
        if item.process.returncode is None:
            item.process.kill()
            await item.process.wait()
        item.drain.cancel()
        record_output("grpc_host process stderr", "".join(item.log))  # the secret scan reads it too
