"""A simulated Azure OpenAI service: the chat-completions REST API over real HTTP.

Speaks JSON and Server-Sent Events like Azure OpenAI does (usage, content-filter results,
429 with ``retry-after-ms``), counts tokens with tiktoken, and adds a control API
(``/_sim/...``) for fault injection and exact token statistics. See docs/simulator.md.
"""

from simulator._config import ConfigError, DeploymentConfig, FaultSpec, SimulatorConfig
from simulator._server import SimulatorServer, run_simulator
from simulator._stats import DeploymentStats, SimulatorStats, TokenTotals

__all__ = [
    "ConfigError",
    "DeploymentConfig",
    "DeploymentStats",
    "FaultSpec",
    "SimulatorConfig",
    "SimulatorServer",
    "SimulatorStats",
    "TokenTotals",
    "run_simulator",
]
