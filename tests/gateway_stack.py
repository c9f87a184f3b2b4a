"""A real gateway for tests: two simulators (AlphaOpenAI, BetaOpenAI) behind the REST app on uvicorn.

Everything runs on 127.0.0.1 with free ports in the test's event loop; the gateway calls the
simulators through its own aiohttp upstream (``core/upstream/_chat.py``) over real HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from core import Settings, load_settings
from core.config import merge
from http_api import create_app
from localrun.ports import free_port
from simulator import DeploymentConfig, SimulatorConfig, SimulatorServer, run_simulator

DEPLOYMENT = "gpt-35-turbo-16k"
KEYS = {"AlphaOpenAI": "sim-key-alpha", "BetaOpenAI": "sim-key-beta"}


def settings_tree(sims: dict[str, SimulatorServer], **overrides: Any) -> dict[str, Any]:
    """The C# sample's layout pointing at the simulators; ``overrides`` deep-merge on top."""
    tree: dict[str, Any] = {
        "AzureOpenAI": {
            "SystemPrompt": "You are a test assistant.",
            "Services": {
                name: {"Endpoint": sim.url, "ApiKey": KEYS[name], "Type": "azure",
                       "Version": "2024-06-01", "Deployment": DEPLOYMENT, "Model": DEPLOYMENT,
                       "MaxResponseTokens": 200, "MaxRetries": 0}
                for name, sim in sims.items()
            },
        },
        "TenantAzureOpenAIMappings": {"contoso": "AlphaOpenAI", "fabrikam": "BetaOpenAI"},
        "ChatCompletionsOptions": {"Temperature": 0.7, "MaxTokens": 4096},
    }
    merge(tree, overrides)
    return tree


def settings_from(tree: dict[str, Any], tmp_path: Any) -> Settings:
    import json

    path = tmp_path / "appsettings.json"
    path.write_text(json.dumps(tree))
    return load_settings(json_path=path, environ={})


@dataclass
class Stack:
    url: str
    alpha: SimulatorServer
    beta: SimulatorServer
    client: httpx.AsyncClient

    def sim(self, name: str) -> SimulatorServer:
        return self.alpha if name == "AlphaOpenAI" else self.beta

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed by (name, sorted labels)."""
        text = (await self.client.get("/metrics")).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


async def start_simulator(name: str, **config: Any) -> SimulatorServer:
    deployment = DeploymentConfig(name=DEPLOYMENT, model=DEPLOYMENT,
                                  tpm=config.pop("tpm", 0), rpm=config.pop("rpm", 0))
    extra = tuple(DeploymentConfig(name=n) for n in config.pop("extra_deployments", ()))
    cfg = SimulatorConfig(name=name, api_key=KEYS[name], deployments=(deployment, *extra),
                          seed=config.pop("seed", 7), **config)
    return await run_simulator(cfg, host="127.0.0.1", port=0)


@asynccontextmanager
async def serve_app(settings: Settings) -> AsyncIterator[str]:
    """The REST app on uvicorn at a free port, in this event loop."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@asynccontextmanager
async def gateway_stack(tmp_path: Any, sim_options: dict[str, Any] | None = None,
                        **overrides: Any) -> AsyncIterator[Stack]:
    alpha = await start_simulator("AlphaOpenAI", **dict(sim_options or {}))
    beta = await start_simulator("BetaOpenAI", **dict(sim_options or {}))
    try:
        tree = settings_tree({"AlphaOpenAI": alpha, "BetaOpenAI": beta}, **overrides)
        async with serve_app(settings_from(tree, tmp_path)) as url, httpx.AsyncClient(
            base_url=url, timeout=30
        ) as client:
            yield Stack(url, alpha, beta, client)
    finally:
        await alpha.stop()
        await beta.stop()
