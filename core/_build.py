"""The composition root: one ``build_gateway(settings)`` per process, no network I/O."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry

from ._errors import ConfigurationError, InvalidRequest, UpstreamMisconfigured
from ._gateway import Background, Gateway
from ._health import Health
from ._routing import Placement, Router
from ._tokens import warm_up
from .access import (
    Authenticator,
    JwksKeys,
    JwtVerifier,
    KeyRing,
    normalise_tenant,
    parse_hashes,
)
from .config import AuthSettings, LimitsSettings, ServiceSettings, Settings, TenantLimitSettings
from .ledger import Ledger, MemoryLedgerStore, Price
from .ledger import LedgerStore as LedgerStoreType
from .limits import (
    BudgetStore,
    Limit,
    Limiter,
    LimitPolicy,
    MemoryBudgetStore,
    Quota,
    QuotaKeeper,
    QuotaMetrics,
    TenantLimits,
)
from .state import MemoryStateStore, StateStore, TableLocation
from .telemetry import GatewayMetrics, RateLimitMetrics, Tracing, tracing_active
from .upstream import Relay, TokenProvider, Upstream

log = logging.getLogger("core.build")

TOKEN_TIMEOUT_SECONDS = 10.0  # an Entra token that takes longer is treated as unobtainable
UpstreamFactory = Callable[[str, ServiceSettings, Settings], Upstream]
RelayFactory = Callable[[str, ServiceSettings], Relay]


def build_gateway(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    state_store: StateStore | None = None,
    upstream_factory: UpstreamFactory | None = None,
    relay_factory: RelayFactory | None = None,
) -> Gateway:
    """Wire the gateway from settings. Instances without endpoint or credentials are skipped."""
    registry = registry if registry is not None else CollectorRegistry()
    chat_upstream, aiohttp_relay = _aiohttp_factories(_entra_tokens())
    factory = upstream_factory or chat_upstream
    relay = relay_factory or aiohttp_relay
    upstreams: dict[str, Upstream] = {}
    relays: dict[str, Relay] = {}
    for name, service in settings.azure_openai.services.items():
        problem = unusable_reason(service)
        if problem:
            log.warning("skipping Azure OpenAI instance %s: %s", name, problem)
            continue
        upstreams[name] = factory(name, service, settings)
        relays[name] = relay(name, service)
    mappings = {}
    for tenant, target in settings.tenant_azure_openai_mappings.items():
        found = settings.service_named(target)
        mappings[tenant] = found[0] if found else target
    keys = _tenant_keys(settings.auth)
    metrics = GatewayMetrics(settings.prometheus, registry, known_tenants=[*mappings, *keys.tenants],
                             fold_unknown_tenants=settings.folds_unknown_tenants)
    store = state_store if state_store is not None else build_state_store(settings, registry=registry)
    health = Health(upstreams, settings.gateway.circuit_breaker)
    placements = {n: Placement(u.settings.priority, u.settings.weight) for n, u in upstreams.items()}
    router = Router(placements, mappings, store, health)
    warm_up()
    limit_metrics = RateLimitMetrics(registry, metrics.tokens.tenant_label)
    limiter, quotas = build_limiter(settings, limit_metrics), build_quotas(settings, limit_metrics)
    ledger = build_ledger(settings, registry=registry)
    background = (*_background(settings, registry), *_health_sync(settings, health),
                  *((ledger,) if ledger is not None else ()))
    return Gateway(settings, upstreams, router, metrics, registry, store, background, health=health,
                   authenticator=_authenticator(settings.auth, keys), limiter=limiter, quotas=quotas,
                   relays=relays, ledger=ledger, tracing=_tracing(settings, registry))


def _authenticator(auth: AuthSettings, keys: KeyRing) -> Authenticator:
    jwt = None
    if "jwt" in auth.modes:
        from .access._http import AiohttpJsonFetcher

        jwks = JwksKeys(auth.jwt.issuer, AiohttpJsonFetcher(), jwks_uri=auth.jwt.jwks_uri,
                        refresh_interval_seconds=auth.jwt.refresh_interval_seconds)
        jwt = JwtVerifier(issuer=auth.jwt.issuer, audience=auth.jwt.audience, tenant_claim=auth.jwt.tenant_claim,
                          leeway_seconds=auth.jwt.clock_skew_seconds, keys=jwks)
    metrics_key, admin_key = auth.metrics_key.get_secret_value(), auth.admin_keys.get_secret_value()
    metrics_keys = KeyRing({"metrics": parse_hashes(metrics_key)}) if metrics_key.strip() else None
    admin_keys = KeyRing({"admin": parse_hashes(admin_key)}) if admin_key.strip() else None
    return Authenticator(modes=auth.modes, jwt=jwt, keys=keys, metrics_keys=metrics_keys, admin_keys=admin_keys,
                         admin_role=auth.jwt.admin_role.strip())


def _tenant_keys(auth: AuthSettings) -> KeyRing:
    """``Auth:Keys``: tenant names checked like request tenants, hashes parsed; errors name the key."""
    hashes: dict[str, tuple[bytes, ...]] = {}
    for raw_tenant, value in auth.keys.items():
        key = f"Auth:Keys:{raw_tenant}"
        try:
            tenant = normalise_tenant(raw_tenant, key)
            hashes[tenant] = (*hashes.get(tenant, ()), *parse_hashes(value.get_secret_value()))
        except InvalidRequest as exc:
            raise ConfigurationError(key, exc.detail) from None
        except ValueError as exc:
            raise ConfigurationError(key, str(exc)) from None
    try:
        return KeyRing(hashes)
    except ValueError as exc:
        raise ConfigurationError("Auth:Keys", str(exc)) from None


def configure_telemetry(
    settings: Settings, environ: Mapping[str, str] | None = None, *, service_name: str = "openai-gateway",
    export_process: bool = False,
) -> bool:
    """Once per process, before ``build_gateway``: traces and logs to Application Insights when
    ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (see core/telemetry/_azure_monitor.py).
    ``export_process``: a long-lived host's choice to export spans from a child process (another
    core converts them to envelopes). Returns whether it is on; off loads nothing and costs nothing."""
    env = os.environ if environ is None else environ
    if not env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip():
        return False
    from .telemetry._azure_monitor import configure_azure_monitor_tracing

    return configure_azure_monitor_tracing(settings.telemetry, env, service_name, export_process=export_process)


def _tracing(settings: Settings, registry: CollectorRegistry) -> Tracing:
    if not tracing_active():
        return Tracing()
    from .telemetry import own_tracer
    from .telemetry._span_pipe import DroppedSpans

    registry.register(DroppedSpans())
    return Tracing(own_tracer("core.gateway"), capture_content=settings.telemetry.capture_content)


def unusable_reason(service: ServiceSettings) -> str:
    if not service.endpoint:
        return "Endpoint is empty"
    if not service.deployment:
        return "Deployment is empty"
    if service.type == "azure" and not service.api_key.get_secret_value():
        return "Type is 'azure' but ApiKey is empty (use Type 'azuread' for Entra ID)"
    return ""


def _entra_tokens() -> Callable[[], TokenProvider]:
    """One Entra credential (and its token cache) for every ``azuread`` instance, made on first need."""
    provider: TokenProvider | None = None

    def get() -> TokenProvider:
        nonlocal provider
        if provider is None:
            from azure.identity.aio import DefaultAzureCredential, get_bearer_token_provider

            from .upstream._session import COGNITIVE_SERVICES_SCOPE

            provider = get_bearer_token_provider(DefaultAzureCredential(), COGNITIVE_SERVICES_SCOPE)
        return provider

    return get


def _aiohttp_factories(tokens: Callable[[], TokenProvider]) -> tuple[UpstreamFactory, RelayFactory]:
    """Every instance on one shared aiohttp session (no SDK in the gateway process): the C# sample's
    routes (``ChatUpstream``) and the compatible API's relays (``AiohttpRelay``)."""
    from .upstream._chat import ChatUpstream
    from .upstream._relay import AiohttpRelay
    from .upstream._session import SharedSession

    session = SharedSession()

    def entra(name: str, service: ServiceSettings) -> TokenProvider | None:
        if service.type != "azuread":
            return None
        return _bounded_token(name, tokens(), min(service.timeout_seconds, TOKEN_TIMEOUT_SECONDS))

    def upstream(name: str, service: ServiceSettings, settings: Settings) -> Upstream:
        return ChatUpstream(name, service, settings.chat_completions_options, session,
                            token_provider=entra(name, service))

    def relay(name: str, service: ServiceSettings) -> Relay:
        return AiohttpRelay(name, service, session, token_provider=entra(name, service))

    return upstream, relay


def _bounded_token(name: str, provider: TokenProvider, seconds: float) -> TokenProvider:
    """An Entra token provider that fails within ``seconds``, naming the instance's setting."""
    from azure.core.exceptions import AzureError

    async def token() -> str:
        try:
            async with asyncio.timeout(seconds):
                return await provider()
        except (AzureError, TimeoutError) as exc:  # ClientAuthenticationError, CredentialUnavailableError...
            reason = f"none within {seconds:g} s" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise UpstreamMisconfigured(
                f"Azure OpenAI instance '{name}' is Type azuread but no Entra token could be obtained "
                f"({reason}); give the gateway a managed identity or set AZURE_CLIENT_ID, "
                f"or check AzureOpenAI:Services:{name}:Type",
                instance=name, setting=f"AzureOpenAI:Services:{name}:Type",
            ) from None

    return token


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


def build_ledger(settings: Settings, *, registry: CollectorRegistry, writer: str | None = None) -> Ledger | None:
    """The usage ledger (``Ledger:*``): in the state store's Table storage account, else in memory."""
    config = settings.ledger
    if not config.enabled:
        return None
    if settings.state_store.type == "table":
        from .ledger._table import TableLedgerStore
        from .state._table import open_table

        client, credential = open_table(table_location(settings, config.table_name, "Ledger:TableName"))
        store: LedgerStoreType = TableLedgerStore(client, credential=credential, timeout_seconds=config.timeout_seconds)
    else:
        store = MemoryLedgerStore()
    prices = {model: Price(p.prompt_per1k, p.completion_per1k) for model, p in settings.pricing.items()}
    # One writer per process lifetime: its rows are its own, so rewriting them is idempotent.
    writer = writer or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    return Ledger(store, writer=writer, flush_seconds=config.flush_seconds, prices=prices, registry=registry)


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


def _health_sync(settings: Settings, health: Health) -> tuple[Background, ...]:
    """With ``StateStore:Type=table``, replicas share cool-downs and open circuits."""
    if settings.state_store.type != "table" or not health.names:
        return ()
    from ._health_sync import HealthSync
    from .state._health_table import table_health_board

    board = table_health_board(table_location(settings, settings.state_store.table_name))
    return (HealthSync(health, board, interval_seconds=settings.gateway.health_sync_seconds),)


def _background(settings: Settings, registry: CollectorRegistry) -> tuple[Background, ...]:
    if not settings.remote_write.enabled:
        return ()
    from .telemetry._remote_write import RemoteWritePusher

    return (RemoteWritePusher(settings.remote_write, registry),)


def limit_policy(limits: LimitsSettings) -> LimitPolicy:
    """``Limits:Tenants:<tenant>`` and ``Limits:Default`` as budgets per ``Limits:WindowSeconds``."""

    def tenant(values: TenantLimitSettings) -> TenantLimits:
        window = limits.window_seconds
        return TenantLimits(Limit.per_minute(values.tokens_per_minute, window),
                            Limit.per_minute(values.requests_per_minute, window))

    return LimitPolicy({name: tenant(v) for name, v in limits.tenants.items()}, tenant(limits.default),
                       limits.window_seconds)


def build_quotas(settings: Settings, metrics: RateLimitMetrics) -> QuotaKeeper | None:
    """Token quotas per UTC day / month (``Limits:...:{TokensPerDay, TokensPerMonth}``), reserved in the
    same budget store as the limits; None when no tenant has one."""
    limits = settings.limits

    def quota(values: TenantLimitSettings) -> Quota:
        return Quota(values.tokens_per_day, values.tokens_per_month)

    quotas = {name: quota(v) for name, v in limits.tenants.items()}
    default = quota(limits.default)
    if not any(q.per_day or q.per_month for q in (default, *quotas.values())):
        return None
    return QuotaKeeper(quotas, default, _budget_store(settings),
                       metrics=QuotaMetrics(metrics.quota_used, metrics.refused),
                       on_store_failure=limits.on_store_failure, timeout_seconds=settings.state_store.timeout_ms / 1000)


def _budget_store(settings: Settings) -> BudgetStore:
    if settings.state_store.type != "table":
        return MemoryBudgetStore()
    from .limits._table import TableBudgetStore
    from .state._table import open_table

    client, credential = open_table(table_location(settings, settings.state_store.table_name))
    return TableBudgetStore(client, credential=credential)


def build_limiter(settings: Settings, metrics: RateLimitMetrics) -> Limiter | None:
    """The limiter when any tenant is limited, its budgets shared through the state store's table
    (``StateStore:Type`` = ``table``) or kept in this process (``memory``); no network I/O."""
    policy = limit_policy(settings.limits)
    if not policy.any_limited:
        return None
    store = _budget_store(settings)
    return Limiter(policy, store, metrics=metrics, on_store_failure=settings.limits.on_store_failure,
                   timeout_seconds=settings.state_store.timeout_ms / 1000)
