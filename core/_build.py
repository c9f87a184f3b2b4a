"""The composition root: one ``build_gateway(settings)`` per process, no network I/O."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry

from ._errors import ConfigurationError
from ._gateway import Background, Gateway
from ._routing import Router
from ._tokens import warm_up
from .config import ServiceSettings, Settings
from .state import MemoryStateStore, StateStore, TableLocation
from .telemetry import GatewayMetrics, Tracing, tracing_active
from .upstream import TokenProvider, Upstream

log = logging.getLogger("core.build")

UpstreamFactory = Callable[[str, ServiceSettings, Settings], Upstream]


def build_gateway(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    state_store: StateStore | None = None,
    upstream_factory: UpstreamFactory | None = None,
) -> Gateway:
    """Wire the gateway from settings. Instances without endpoint or credentials are skipped."""
    registry = registry if registry is not None else CollectorRegistry()
    factory = upstream_factory or _azure_upstreams()
    upstreams: dict[str, Upstream] = {}
    for name, service in settings.azure_openai.services.items():
        problem = unusable_reason(service)
        if problem:
            log.warning("skipping Azure OpenAI instance %s: %s", name, problem)
            continue
        upstreams[name] = factory(name, service, settings)
    mappings = {}
    for tenant, target in settings.tenant_azure_openai_mappings.items():
        found = settings.service_named(target)
        mappings[tenant] = found[0] if found else target
    metrics = GatewayMetrics(settings.prometheus, registry, known_tenants=mappings)
    store = state_store if state_store is not None else build_state_store(settings, registry=registry)
    router = Router(tuple(upstreams), mappings, store)
    warm_up()
    return Gateway(settings, upstreams, router, metrics, registry, store, _background(settings, registry),
                   tracing=_tracing(settings))


def configure_telemetry(
    settings: Settings, environ: Mapping[str, str] | None = None, *, service_name: str = "openai-gateway"
) -> bool:
    """Once per process, before ``build_gateway``: traces and logs to Application Insights when
    ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (see core/telemetry/_azure_monitor.py).
    Returns whether it is on; off loads nothing and costs nothing."""
    env = os.environ if environ is None else environ
    if not env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip():
        return False
    from .telemetry._azure_monitor import configure_azure_monitor_tracing

    return configure_azure_monitor_tracing(settings.telemetry, env, service_name)


def _tracing(settings: Settings) -> Tracing:
    if not tracing_active():
        return Tracing()
    from opentelemetry import trace

    return Tracing(trace.get_tracer("core.gateway"), capture_content=settings.telemetry.capture_content)


def unusable_reason(service: ServiceSettings) -> str:
    if not service.endpoint:
        return "Endpoint is empty"
    if not service.deployment:
        return "Deployment is empty"
    if service.type == "azure" and not service.api_key.get_secret_value():
        return "Type is 'azure' but ApiKey is empty (use Type 'azuread' for Entra ID)"
    return ""


def _azure_upstreams() -> UpstreamFactory:
    """Upstreams on the openai SDK; ``azuread`` instances share one Entra credential and its cache."""
    provider: TokenProvider | None = None

    def factory(name: str, service: ServiceSettings, settings: Settings) -> Upstream:
        from .upstream._azure_openai import COGNITIVE_SERVICES_SCOPE, AzureOpenAIUpstream

        nonlocal provider
        if service.type == "azuread" and provider is None:
            from azure.identity.aio import DefaultAzureCredential, get_bearer_token_provider

            provider = get_bearer_token_provider(DefaultAzureCredential(), COGNITIVE_SERVICES_SCOPE)
        tokens = provider if service.type == "azuread" else None
        return AzureOpenAIUpstream(name, service, settings.chat_completions_options, token_provider=tokens)

    return factory


def build_state_store(
    settings: Settings, *, registry: CollectorRegistry, probe_interval_seconds: float = 5.0
) -> StateStore:
    """The store named by ``StateStore:Type``; no network I/O (the table is reached on first use)."""
    config = settings.state_store
    if config.type == "memory":
        return MemoryStateStore()
    from .state._table import table_state_store

    return table_state_store(
        table_location(settings, config.table_name),
        lease_size=config.lease_size,
        timeout_seconds=config.timeout_ms / 1000,
        registry=registry,
        probe_interval_seconds=probe_interval_seconds,
    )


def table_location(settings: Settings, table_name: str, table_name_key: str = "StateStore:TableName") -> TableLocation:
    """Where a gateway table lives: ``StateStore:ConnectionString``, else ``AzureWebJobsStorage``
    (a connection string, ``__accountName``, ``__tableServiceUri``), else ``StateStore:TableServiceUri``."""
    own, host = settings.state_store, settings.azure_web_jobs_storage
    for key, conn in (
        ("StateStore:ConnectionString", own.connection_string.get_secret_value()),
        ("AzureWebJobsStorage", "" if own.table_service_uri else host.connection_string.get_secret_value()),
    ):
        if conn.strip():
            return TableLocation(table_name, table_name_key, connection_string=conn, connection_string_key=key)
    endpoint = own.table_service_uri or host.table_service_uri
    if not endpoint and host.account_name:
        endpoint = f"https://{host.account_name}.table.core.windows.net"
    if not endpoint:
        raise ConfigurationError(
            "StateStore:Type",
            "is 'table' but no storage is configured: set AzureWebJobsStorage (a connection string, "
            "e.g. UseDevelopmentStorage=true), AzureWebJobsStorage__accountName, "
            "AzureWebJobsStorage__tableServiceUri or StateStore:ConnectionString",
        )
    return TableLocation(table_name, table_name_key, endpoint=endpoint, client_id=host.client_id)


def _background(settings: Settings, registry: CollectorRegistry) -> tuple[Background, ...]:
    if not settings.remote_write.enabled:
        return ()
    from .telemetry._remote_write import RemoteWritePusher

    return (RemoteWritePusher(settings.remote_write, registry),)
