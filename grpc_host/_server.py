"""Composition root of the gRPC host: one gateway, one grpc.aio server, one metrics endpoint.

Start-up: build the core from settings (fails fast on bad configuration), add the OpenAI
servicer, ``grpc.health.v1`` and server reflection, listen, then mark the services SERVING.
Shutdown (SIGTERM/SIGINT): health goes NOT_SERVING, new RPCs are refused, in-flight RPCs
(streams included) get ``GraceSeconds`` to finish, then the gateway flushes and closes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from core import ConfigurationError, Gateway, Settings, StateStore, build_gateway, freeze_startup_heap, tracing_active
from protos import openai_pb2, openai_pb2_grpc

from ._config import GrpcHostSettings
from ._decode import RejectUndecodable
from ._metrics import MetricsServer, start_metrics_server
from ._servicer import OpenAIService

log = logging.getLogger("grpc_host")

OPENAI_SERVICE = openai_pb2.DESCRIPTOR.services_by_name["OpenAIServiceGrpc"].full_name
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


@dataclass(frozen=True, slots=True)
class RunningHost:
    """A started host; ``port``/``metrics_port`` are the bound ports (useful with port 0)."""

    gateway: Gateway
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    metrics: MetricsServer
    address: str
    port: int
    metrics_port: int

    async def shutdown(self, grace: float) -> None:
        """Drain: NOT_SERVING, refuse new RPCs, give in-flight ones ``grace`` seconds, close."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        try:
            await self.gateway.aclose()
        finally:
            await self.metrics.stop()


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


async def start_host(
    settings: Settings,
    host_settings: GrpcHostSettings,
    *,
    registry: CollectorRegistry | None = None,
    state_store: StateStore | None = None,
) -> RunningHost:
    """Build the gateway once and start serving; raises ConfigurationError if it cannot listen."""
    gateway = build_gateway(settings, registry=registry, state_store=state_store)
    server = grpc.aio.server(
        interceptors=[RejectUndecodable(gateway.observe_request), *_interceptors()],
        options=[
            # Same body limit as REST; bigger messages get RESOURCE_EXHAUSTED from gRPC itself.
            ("grpc.max_receive_message_length", settings.gateway.max_body_bytes),
            ("grpc.so_reuseport", 0),  # a second host on the same port must fail, not share it
        ]
    )
    openai_pb2_grpc.add_OpenAIServiceGrpcServicer_to_server(OpenAIService(gateway), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((OPENAI_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME), server)

    endpoint = _endpoint(host_settings.host, host_settings.port)
    try:
        port = server.add_insecure_port(endpoint)
    except RuntimeError as exc:
        raise ConfigurationError("GrpcHost:Port", f"cannot listen on {endpoint} ({exc})") from None
    await gateway.start()
    await server.start()
    try:
        metrics = await start_metrics_server(
            gateway.metrics_exposition, host_settings.metrics_host, host_settings.metrics_port,
            gateway.authorize_metrics,
        )
    except OSError as exc:
        await server.stop(None)
        await gateway.aclose()
        where = _endpoint(host_settings.metrics_host, host_settings.metrics_port)
        raise ConfigurationError("GrpcHost:MetricsPort", f"cannot listen on {where} ({exc})") from None
    for name in ("", OPENAI_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningHost(gateway, server, health_servicer, metrics, host_settings.host, port, metrics.port)


def _interceptors() -> list[grpc.aio.ServerInterceptor]:
    """With tracing on: a SERVER span per RPC continuing the caller's ``traceparent`` metadata
    (health checks and reflection excluded)."""
    if not tracing_active():
        return []
    from ._tracing import ServerSpans

    return [ServerSpans(OPENAI_SERVICE)]


async def serve(settings: Settings, host_settings: GrpcHostSettings) -> int:
    """Run until SIGTERM or SIGINT, drain, and return the process exit code (0)."""
    host = await start_host(settings, host_settings)
    freeze_startup_heap()  # the gateway is built: full collections skip it from now on
    log.info(
        "gRPC host listening on %s (metrics on http://%s/metrics)",
        _endpoint(host.address, host.port),
        _endpoint(host_settings.metrics_host, host.metrics_port),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: NOT_SERVING, draining in-flight RPCs for up to %ss", host_settings.grace_seconds)
    await host.shutdown(host_settings.grace_seconds)
    log.info("gRPC host stopped")
    return 0
