"""The local REST server: the app on uvicorn with the ``RestHost:*`` limits.

Start-up fails like the gRPC host's: the gateway is built and started and the port bound before
uvicorn runs, so bad settings (or a busy port) end the process with one line naming the key and
exit code 2 (:class:`StartupFailed`), never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from core import ConfigurationError, Settings, freeze_startup_heap

from ._guard import BodyGuard, guarded_protocol
from ._handlers import quiet_stream_aborts
from ._limits import RestHostSettings
from ._runtime import LazyGateway
from .app import create_app

log = logging.getLogger("http_api")

CUTOFF_ROUTE = "connection"  # gateway_requests_total{route="connection"}: cut off before routing


def server_config(provider: LazyGateway, limits: RestHostSettings, *, log_level: str = "warning",
                  hot_routes: bool = True) -> uvicorn.Config:
    """uvicorn's config for the app over ``provider`` with the ``RestHost:*`` limits (``hot_routes``:
    see :func:`create_app`)."""

    def on_cutoff(status: int, seconds: float) -> None:
        gateway = provider.built
        if gateway is not None:
            gateway.observe_request(CUTOFF_ROUTE, status, seconds)

    app = BodyGuard(create_app(provider=provider, hot_routes=hot_routes), limits)
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(quiet_stream_aborts)
    uvicorn_log.addFilter(_one_line_per_upgrade)
    return uvicorn.Config(
        app, host=limits.host, port=limits.port, http=guarded_protocol(limits, on_cutoff), ws="none",
        limit_concurrency=None,  # RestHost:MaxConnections is enforced by the guarded protocol (a problem, counted)
        timeout_keep_alive=limits.keep_alive_seconds,
        log_level=log_level, access_log=False, lifespan="on", loop="auto",
        proxy_headers=False,  # nothing reads the client's address or scheme: no X-Forwarded-* rewriting
    )


def _one_line_per_upgrade(record: logging.LogRecord) -> bool:
    """uvicorn follows "Unsupported upgrade request." with advice to install a WebSocket library:
    the gateway serves no WebSockets, so that second line only misleads an operator."""
    return not str(record.msg).startswith("No supported WebSocket library")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; ConfigurationError naming RestHost:Port if it cannot."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise ConfigurationError("RestHost:Port", f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


@asynccontextmanager
async def running(settings: Settings, limits: RestHostSettings, *, log_level: str = "warning",
                  hot_routes: bool = True) -> AsyncIterator[tuple[uvicorn.Server, asyncio.Task[None], int]]:
    """Bind, build and start the gateway, and serve in the background; yields (server, task, port).

    Raises :class:`core.ConfigurationError` before serving when settings or the port are bad.
    """
    sock = bind(limits.host, limits.port)  # first: a busy port is one error, before the gateway says anything
    provider = LazyGateway(settings)
    try:
        await provider()  # build and start now: configuration errors surface here, as one error
    except BaseException:
        sock.close()
        raise
    server = uvicorn.Server(server_config(provider, limits, log_level=log_level, hot_routes=hot_routes))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield server, task, int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        await task
        sock.close()
        await provider.aclose()


async def serve(settings: Settings, limits: RestHostSettings, *, log_level: str = "warning",
                hot_routes: bool = True) -> int:
    """Serve until SIGINT/SIGTERM (uvicorn's handlers); the exit code."""
    async with running(settings, limits, log_level=log_level, hot_routes=hot_routes) as (server, task, port):
        freeze_startup_heap()  # the gateway is built: full collections skip it from now on
        log.info("REST gateway listening on http://%s:%d", limits.host, port)
        await task
        return 0 if server.started else 1
