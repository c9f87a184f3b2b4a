"""``python -m simulator``: serve one or more simulated instances until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from simulator._config import ConfigError, DeploymentConfig, SimulatorConfig
from simulator._server import SimulatorServer

log = logging.getLogger("simulator")
API_KEY_ENV = "SIM_API_KEY"


@dataclass(frozen=True, slots=True)
class Instance:
    config: SimulatorConfig
    host: str
    port: int


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Simulated Azure OpenAI chat-completions service (HTTP + SSE) with a /_sim control API.",
    )
    add = parser.add_argument
    add(
        "--name",
        default="SimulatedOpenAI",
        help="instance name, shown in logs and stats (default: %(default)s)",
    )
    add("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    add("--port", type=int, default=8101, help="port to bind; 0 = any free port (default: %(default)s)")
    add(
        "--api-key",
        default=None,
        help=f"the api-key clients must send (default: ${API_KEY_ENV} or 'sim-key')",
    )
    add(
        "--no-bearer", action="store_true", help="refuse 'Authorization: Bearer' tokens (default: accept any)"
    )
    add("--deployment", action="append", metavar="NAME[=MODEL]",
        help="a deployment; repeat for several (default: gpt-35-turbo-16k)")  # fmt: skip
    add("--tpm", type=int, default=0, help="tokens per minute per deployment; 0 = unlimited (default: 0)")
    add("--rpm", type=int, default=0, help="requests per minute per deployment; 0 = unlimited (default: 0)")
    add("--seed", type=int, default=0, help="seed of the generated text (default: 0)")
    add("--latency-ms", type=float, default=0.0, help="fixed latency before the response (default: 0)")
    add(
        "--per-token-latency-ms",
        type=float,
        default=0.0,
        help="extra latency per completion token (default: 0)",
    )
    add("--zero-latency", action="store_true", help="benchmark mode: no latency at all, whatever else is set")
    add("--min-completion-tokens", type=int, default=10, help="shortest default completion (default: 10)")
    add("--max-completion-tokens", type=int, default=60, help="longest default completion (default: 60)")
    add("--no-content-filter", action="store_true", help="omit Azure's prompt/content filter results")
    add("--instances", default=None, metavar="NAME:PORT[:API_KEY],...",
        help="serve several instances in this process, sharing every other option")  # fmt: skip
    add("--config", type=Path, default=None, metavar="FILE.json",
        help="JSON file {\"instances\": [...]} (see docs/simulator.md); overrides the options")  # fmt: skip
    add("--access-log", action="store_true", help="log every request (off by default for speed)")
    add("--log-level", default="INFO", help="logging level (default: %(default)s)")
    return parser


def _deployments(values: Sequence[str] | None, tpm: int, rpm: int) -> tuple[DeploymentConfig, ...]:
    result = []
    for value in values or ["gpt-35-turbo-16k"]:
        name, _, model = value.partition("=")
        result.append(DeploymentConfig(name=name.strip(), model=model.strip(), tpm=tpm, rpm=rpm))
    return tuple(result)


def instances_from_args(args: argparse.Namespace) -> list[Instance]:
    """The instances to serve, from ``--config``, ``--instances`` or the single-instance options."""
    if args.config is not None:
        return _instances_from_file(args.config)
    base = SimulatorConfig(
        name=args.name,
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or "sim-key",
        deployments=_deployments(args.deployment, args.tpm, args.rpm),
        seed=args.seed,
        latency_ms=args.latency_ms,
        per_token_latency_ms=args.per_token_latency_ms,
        accept_bearer=not args.no_bearer,
        zero_latency=args.zero_latency,
        content_filter=not args.no_content_filter,
        min_completion_tokens=args.min_completion_tokens,
        max_completion_tokens=args.max_completion_tokens,
    )
    if not args.instances:
        return [Instance(base, args.host, args.port)]
    result = []
    for item in args.instances.split(","):
        name, _, rest = item.strip().partition(":")
        port_text, _, key = rest.partition(":")
        if not name or not port_text.isdigit():
            raise ConfigError(f"--instances: expected NAME:PORT[:API_KEY], got {item!r}")
        config = replace(base, name=name, api_key=key or base.api_key)
        result.append(Instance(config, args.host, int(port_text)))
    return result


def _instances_from_file(path: Path) -> list[Instance]:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"--config {path}: {exc}") from None
    items = data.get("instances") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(f'--config {path}: expected {{"instances": [ ... ]}}')
    result = []
    for item in items:
        values: dict[str, Any] = dict(item)
        host = str(values.pop("host", "127.0.0.1"))
        port = values.pop("port", 0)
        if not isinstance(port, int):
            raise ConfigError(f"--config {path}: instance {values.get('name')!r}: port must be an integer")
        result.append(Instance(SimulatorConfig.from_dict(values), host, port))
    return result


async def serve(instances: Sequence[Instance], access_log: bool = False) -> None:
    """Start every instance, log one ready line each, and serve until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    servers: list[SimulatorServer] = []
    try:
        for instance in instances:
            server = SimulatorServer(instance.config)
            await server.start(instance.host, instance.port, access_log=access_log)
            servers.append(server)
            names = ", ".join(d.name for d in instance.config.deployments)
            log.info("%s ready at %s (deployments: %s)", instance.config.name, server.url, names)
        await stop.wait()
        log.info("shutting down")
    finally:
        for server in servers:
            await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        instances = instances_from_args(args)
    except ConfigError as exc:
        print(f"simulator: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        _run(serve(instances, access_log=args.access_log))
    except OSError as exc:
        print(f"simulator: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _run(coro: Any) -> None:
    try:
        import uvloop  # optional speed-up
    except ImportError:
        asyncio.run(coro)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)
