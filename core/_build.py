"""The composition root: one ``build_gateway(settings)`` per process, no network I/O."""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from ._gateway import Background, Gateway
from ._routing import Router
from ._tokens import warm_up
from .config import ServiceSettings, Settings
from .state import MemoryStateStore, StateStore
from .telemetry import GatewayMetrics
from .upstream import TokenProvider, Upstream
from .upstream._azure_openai import COGNITIVE_SERVICES_SCOPE, AzureOpenAIUpstream

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
    store = state_store if state_store is not None else _state_store(settings, registry)
    router = Router(tuple(upstreams), mappings, store)
    warm_up()
    return Gateway(settings, upstreams, router, metrics, registry, store, _background(settings, registry))


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
        nonlocal provider
        if service.type == "azuread" and provider is None:
            from azure.identity.aio import DefaultAzureCredential, get_bearer_token_provider

            provider = get_bearer_token_provider(DefaultAzureCredential(), COGNITIVE_SERVICES_SCOPE)
        tokens = provider if service.type == "azuread" else None
        return AzureOpenAIUpstream(name, service, settings.chat_completions_options, token_provider=tokens)

    return factory


def _state_store(settings: Settings, registry: CollectorRegistry) -> StateStore:
    if settings.state_store.type == "memory":
        return MemoryStateStore()
    from .state._table import build_state_store

    return build_state_store(settings, registry=registry)


def _background(settings: Settings, registry: CollectorRegistry) -> tuple[Background, ...]:
    if not settings.remote_write.enabled:
        return ()
    from .telemetry._remote_write import RemoteWritePusher

    return (RemoteWritePusher(settings.remote_write, registry),)
