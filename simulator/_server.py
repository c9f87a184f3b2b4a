"""The HTTP server of one simulated Azure OpenAI instance, with its control API."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from simulator import _azure as azure
from simulator._chat import ChatService
from simulator._config import ConfigError, FaultSpec, SimulatorConfig
from simulator._faults import FaultQueue
from simulator._stats import SimulatorStats, StatsRecorder

log = logging.getLogger("simulator")
CHAT_ROUTE = "/openai/deployments/{deployment}/chat/completions"
EMBEDDINGS_ROUTE = "/openai/deployments/{deployment}/embeddings"
RESPONSES_ROUTES = ("/openai/v1/responses", "/openai/responses")
MAX_BODY_BYTES = 16 * 1024 * 1024


class SimulatorServer:
    """One simulated instance: ``await start()``, use ``url``, ``await stop()``."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._stats = StatsRecorder(config.name)
        self._faults = FaultQueue(config.faults)
        self._chat = ChatService(config, self._stats, self._faults)
        self._runner: web.AppRunner | None = None
        self._host = ""
        self._port = 0

    # -- lifecycle -------------------------------------------------------------------------
    async def start(
        self, host: str = "127.0.0.1", port: int = 0, access_log: bool = False, shutdown_timeout: float = 5.0
    ) -> None:
        """Bind and serve in the running event loop; ``port=0`` picks a free port.

        ``stop()`` waits up to ``shutdown_timeout`` seconds for requests in flight.
        """
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        runner = web.AppRunner(
            self.build_app(),
            access_log=log if access_log else None,
            handle_signals=False,
            shutdown_timeout=shutdown_timeout,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=1024)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._host, self._port = runner.addresses[0][:2]

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> SimulatorServer:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- public state ----------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The Azure endpoint to configure, e.g. ``http://127.0.0.1:54321/``."""
        if self._runner is None:
            raise RuntimeError("simulator not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}/"

    @property
    def stats(self) -> SimulatorStats:
        """A snapshot of the counters (same data as ``GET /_sim/stats``)."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters and empty the rate-limit windows (``POST /_sim/reset``)."""
        self._stats.reset()
        self._chat.reset_limits()

    def set_fault(self, fault: FaultSpec | None = None, **fields: Any) -> FaultSpec:
        """Queue a fault: ``set_fault(FaultSpec(...))`` or ``set_fault(status=503, count=2)``."""
        spec = fault if fault is not None else FaultSpec.from_dict(fields)
        self._faults.add(spec)
        return spec

    def clear_faults(self) -> None:
        self._faults.clear()

    def pending_faults(self) -> list[dict[str, Any]]:
        return self._faults.describe()

    # -- HTTP --------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(CHAT_ROUTE, self._chat.handle)
        app.router.add_post(EMBEDDINGS_ROUTE, self._chat.handle_embeddings)
        for route in RESPONSES_ROUTES:
            app.router.add_post(route, self._chat.handle_responses)
        app.router.add_get("/healthz", _healthz)
        app.router.add_get("/_sim/stats", self._get_stats)
        app.router.add_post("/_sim/reset", self._post_reset)
        app.router.add_get("/_sim/faults", self._get_faults)
        app.router.add_post("/_sim/faults", self._post_faults)
        app.router.add_delete("/_sim/faults", self._delete_faults)
        app.router.add_route("*", "/{tail:.*}", _not_found)
        return app

    async def _get_stats(self, request: web.Request) -> web.Response:
        return _json(self.stats.to_dict())

    async def _post_reset(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return _json(self.stats.to_dict())

    async def _get_faults(self, request: web.Request) -> web.Response:
        return _json({"faults": self.pending_faults()})

    async def _post_faults(self, request: web.Request) -> web.Response:
        try:
            data = orjson.loads(await request.read())
            items = data if isinstance(data, list) else [data]
            specs = [FaultSpec.from_dict(item) for item in items if isinstance(item, dict)]
            if len(specs) != len(items) or not specs:
                raise ConfigError("body must be a fault object or a non-empty array of them")
        except (orjson.JSONDecodeError, ConfigError) as exc:
            return azure.bad_request(f"invalid fault: {exc}")
        for spec in specs:
            self._faults.add(spec)
        return _json({"faults": self.pending_faults()})

    async def _delete_faults(self, request: web.Request) -> web.Response:
        self.clear_faults()
        return _json({"faults": []})


async def run_simulator(
    config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0, access_log: bool = False
) -> SimulatorServer:
    """Start a simulator in the running event loop and return it (call ``await server.stop()``)."""
    server = SimulatorServer(config)
    await server.start(host, port, access_log=access_log)
    return server


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), content_type="application/json")


async def _healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def _not_found(request: web.Request) -> web.Response:
    return azure.error_response(404, "404", azure.MSG_NOT_FOUND)
