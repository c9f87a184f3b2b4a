"""Settings: the C# sample's configuration sections plus the gateway's own, as frozen models.

Sources, later wins: built-in defaults -> JSON file -> environment (``__`` for ``:``) -> Key Vault
secrets (``--`` for ``:``, only when ``KeyVaultName`` is set). Keys match case-insensitively, as
in .NET configuration, so ``BetaOpenAi`` and ``BetaOpenAI`` name the same instance. Validation
errors raise :class:`ConfigurationError` naming the key, e.g.
``AzureOpenAI:Services:AlphaOpenAI:MaxRetries: Input should be a valid integer``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from .._errors import ConfigurationError

# Display names for field names that are not plain PascalCase of the snake_case name.
_DISPLAY = {
    "azure_openai": "AzureOpenAI",
    "tenant_azure_openai_mappings": "TenantAzureOpenAIMappings",
    "api_key": "ApiKey",
    "azure_web_jobs_storage": "AzureWebJobsStorage",
    "prompt_per1k": "PromptPer1K",
    "completion_per1k": "CompletionPer1K",
}


_HISTOGRAM_NAMES = {"prompttokens": "PromptTokens", "completiontokens": "CompletionTokens",
                    "totaltokens": "TotalTokens"}


def _alias(field_name: str) -> str:
    return field_name.replace("_", "")


def display_name(field_name: str) -> str:
    """``max_response_tokens`` -> ``MaxResponseTokens`` (the key as users write it)."""
    if field_name in _DISPLAY:
        return _DISPLAY[field_name]
    return "".join(part[:1].upper() + part[1:] for part in field_name.split("_"))


class _Section(BaseModel):
    model_config = ConfigDict(
        frozen=True, alias_generator=_alias, populate_by_name=True, extra="ignore"
    )


class ServiceSettings(_Section):
    """One Azure OpenAI instance (``AzureOpenAI:Services:<Name>``)."""

    endpoint: str = ""
    api_key: SecretStr = SecretStr("")
    type: Literal["azure", "azuread"] = "azure"
    version: str = "2024-06-01"
    deployment: str = ""
    model: str = "gpt-35-turbo"
    max_response_tokens: int = Field(default=1000, ge=1)
    max_retries: int = Field(default=3, ge=0, le=10)
    timeout_seconds: float = Field(default=60.0, gt=0)
    priority: int = Field(default=1, ge=1, le=100)  # 1 first (PTU), then 2 (pay-as-you-go), ...
    weight: int = Field(default=1, ge=1, le=1000)  # weighted round-robin inside a priority group
    # Compatible API: <client deployment name> (matched case-insensitively) -> this instance's deployment.
    deployments: dict[str, str] = Field(default_factory=dict)

    @field_validator("api_key")
    @classmethod
    def _key_is_printable(cls, value: SecretStr) -> SecretStr:
        # A trailing newline from a Key Vault secret or a file would be sent in the api-key header.
        if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value.get_secret_value()):
            raise ValueError("contains whitespace or control characters (a trailing newline?); "
                             "the value itself is not shown")
        return value

    @field_validator("type", mode="before")
    @classmethod
    def _lower_type(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) URL such as https://myopenai.openai.azure.com/")
        return value


class AzureOpenAISettings(_Section):
    system_prompt: str = "You are a helpful, precise and friendly assistant."
    services: dict[str, ServiceSettings] = Field(default_factory=dict)


class ChatCompletionsOptions(_Section):
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    nucleus_sampling_factor: float | None = Field(default=None, ge=0, le=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    stop_sequences: tuple[str, ...] = ()

    @field_validator("stop_sequences", mode="before")
    @classmethod
    def _indexed_list(cls, value: object) -> object:
        # Environment variables give lists as StopSequences__0, StopSequences__1, ...
        if isinstance(value, Mapping):
            return [value[k] for k in sorted(value, key=lambda k: int(k) if k.isdigit() else 0)]
        if isinstance(value, str):
            return [value]
        return value


class HistogramSettings(_Section):
    start: float = 10
    width: float = Field(default=10, gt=0)
    count: int = Field(default=10, ge=1, le=1000)


def _histograms() -> dict[str, HistogramSettings]:
    return {
        "prompttokens": HistogramSettings(start=10, width=10, count=10),
        "completiontokens": HistogramSettings(start=100, width=100, count=10),
        "totaltokens": HistogramSettings(start=100, width=100, count=10),
    }


class PrometheusSettings(_Section):
    enabled: bool = True
    histograms: dict[str, HistogramSettings] = Field(default_factory=_histograms)
    # Cardinality guard: tenants that are neither mapped, nor in Auth:Keys, nor listed here are
    # reported under ``UnknownTenantLabel`` when ``FoldUnknownTenants`` is on. Unset: on exactly
    # when Auth:Mode is not ``none`` (see ``Settings.folds_unknown_tenants``).
    fold_unknown_tenants: bool | None = None
    known_tenants: tuple[str, ...] = ()
    unknown_tenant_label: str = "other"

    @field_validator("histograms", mode="after")
    @classmethod
    def _all_histograms(cls, value: dict[str, HistogramSettings]) -> dict[str, HistogramSettings]:
        merged = _histograms()
        merged.update({k.lower(): v for k, v in value.items()})
        return merged

    @field_validator("known_tenants", mode="before")
    @classmethod
    def _tenant_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [t for t in re.split(r"[,;\s]+", value) if t]
        if isinstance(value, Mapping):
            return list(value.values())
        return value


class CircuitBreakerSettings(_Section):
    """``Gateway:CircuitBreaker:*`` — ``Failures`` 5xx/timeouts/connection errors within
    ``WindowSeconds`` open an instance's circuit for ``OpenSeconds``; then one probe is let through."""

    failures: int = Field(default=5, ge=1)
    window_seconds: float = Field(default=10.0, gt=0)
    open_seconds: float = Field(default=30.0, gt=0)


class GatewaySettings(_Section):
    """``Gateway:*`` — request handling limits of the gateway itself."""

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_messages: int = Field(default=256, ge=1)
    unhealthy_cooldown_seconds: float = Field(default=10.0, ge=0)
    max_wait_seconds: float = Field(default=2.0, ge=0, le=60)
    max_cooldown_seconds: float = Field(default=60.0, gt=0)
    misconfigured_seconds: float = Field(default=60.0, ge=0)
    health_sync_seconds: float = Field(default=1.0, gt=0, le=60)
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=lambda: CircuitBreakerSettings())


class StateStoreSettings(_Section):
    """``StateStore:*`` — where round-robin state lives (``memory`` or ``table``)."""

    type: Literal["memory", "table"] = "memory"
    table_name: str = "gatewaystate"
    lease_size: int = Field(default=1, ge=1, le=1000)
    timeout_ms: int = Field(default=250, ge=10)
    connection_string: SecretStr = SecretStr("")
    table_service_uri: str = ""

    @field_validator("type", mode="before")
    @classmethod
    def _lower_type(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class StorageConnectionSettings(_Section):
    """The Functions host's ``AzureWebJobsStorage`` (connection string or identity-based)."""

    connection_string: SecretStr = SecretStr("")
    account_name: str = ""
    table_service_uri: str = ""
    credential: str = ""
    client_id: str = ""


class RemoteWriteSettings(_Section):
    """``RemoteWrite:*`` — push metrics to Azure Monitor managed Prometheus (or any receiver)."""

    enabled: bool = False
    url: str = ""
    auth: Literal["none", "entra"] = "none"
    managed_identity_client_id: str = ""
    job: str = "openai-gateway"
    instance: str = ""
    interval_seconds: float = Field(default=15.0, gt=0)
    timeout_seconds: float = Field(default=10.0, gt=0)


_LOOPBACK_HTTP = re.compile(r"^http://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)")
_TENANT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
KEY_HASH = re.compile(r"^sha256:[0-9a-fA-F]{64}$")
AUTH_MODES = ("none", "jwt", "keys", "jwt,keys")


class JwtSettings(_Section):
    """``Auth:Jwt:*`` — who issues the bearer JWTs and which claim names the tenant."""

    issuer: str = ""
    audience: str = ""
    jwks_uri: str = ""  # empty: discovered from <Issuer>/.well-known/openid-configuration
    tenant_claim: str = Field(default="tenant", min_length=1)
    clock_skew_seconds: int = Field(default=60, ge=0, le=600)
    # At most one JWKS fetch per interval for unknown 'kid's (rotation), so garbage cannot hammer the issuer.
    refresh_interval_seconds: float = Field(default=30.0, ge=0, le=3600)
    # A value of the token's ``roles`` claim (an Entra app role) that may read every tenant's usage.
    admin_role: str = ""

    @field_validator("issuer", "jwks_uri")
    @classmethod
    def _url(cls, value: str) -> str:
        """https, or http to a loopback host only (a local test issuer): keys fetched over plain
        http elsewhere could be swapped in transit, and with them who is which tenant."""
        value = value.strip()
        if value and not re.match(r"^https://[^\s/]+", value) and not _LOOPBACK_HTTP.match(value):
            raise ValueError("must be an https URL such as https://login.microsoftonline.com/<tenant-id>/v2.0 "
                             "(plain http only for 127.0.0.1 / localhost)")
        return value


class AuthSettings(_Section):
    """``Auth:*`` — who the caller is. ``Mode`` is normalised to one of :data:`AUTH_MODES`.

    ``Keys:<tenant>`` and ``MetricsKey`` hold only SHA-256 hashes (``sha256:<64 hex>``, several
    separated by ``;`` during a rotation); they are SecretStr so that no repr or log shows them.
    """

    mode: str = "none"
    jwt: JwtSettings = Field(default_factory=JwtSettings)
    keys: dict[str, SecretStr] = Field(default_factory=dict)
    metrics_key: SecretStr = SecretStr("")
    # Finance / operators: read every tenant's usage (GET /admin/usage). Hashes, like Keys.
    admin_keys: SecretStr = SecretStr("")

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        parts = sorted({p.strip().lower() for p in value.split(",") if p.strip()})
        mode = ",".join(parts) or "none"
        if mode not in AUTH_MODES:
            raise ValueError("must be none, jwt, keys or jwt,keys")
        return mode

    @property
    def modes(self) -> frozenset[str]:
        return frozenset() if self.mode == "none" else frozenset(self.mode.split(","))


class TenantLimitSettings(_Section):
    """``Limits:Tenants:<tenant>`` and ``Limits:Default``: 0 or absent = unlimited.

    ``TokensPerDay`` / ``TokensPerMonth`` are quotas per UTC day and month (``core.limits._quota``).
    """

    tokens_per_minute: int = Field(default=0, ge=0)
    requests_per_minute: int = Field(default=0, ge=0)
    tokens_per_day: int = Field(default=0, ge=0)  # UTC day (docs/ledger.md: quotas)
    tokens_per_month: int = Field(default=0, ge=0)  # UTC calendar month


class LimitsSettings(_Section):
    """``Limits:*`` — per-tenant budgets shared by every replica (docs/limits.md)."""

    tenants: dict[str, TenantLimitSettings] = Field(default_factory=dict)
    default: TenantLimitSettings = Field(default_factory=TenantLimitSettings)
    window_seconds: int = Field(default=60, ge=1, le=3600)
    on_store_failure: Literal["allow", "deny"] = "allow"

    @field_validator("on_store_failure", mode="before")
    @classmethod
    def _lower_mode(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("tenants", mode="after")
    @classmethod
    def _normalise_tenants(cls, value: dict[str, TenantLimitSettings]) -> dict[str, TenantLimitSettings]:
        return {k.strip().lower(): v for k, v in value.items()}


class LedgerSettings(_Section):
    """``Ledger:*`` — the usage ledger (Table storage with ``StateStore:Type=table``, else memory)."""

    enabled: bool = True
    flush_seconds: float = Field(default=10.0, gt=0, le=3600)
    table_name: str = "gatewayledger"
    timeout_seconds: float = Field(default=10.0, gt=0)


class PriceSettings(_Section):
    """``Pricing:<model>:{PromptPer1K, CompletionPer1K}`` — price per 1,000 tokens, any currency."""

    prompt_per1k: float = Field(default=0.0, ge=0)
    completion_per1k: float = Field(default=0.0, ge=0)


class TelemetrySettings(_Section):
    """``Telemetry:*`` — traces and logs to Application Insights (on when the standard
    ``APPLICATIONINSIGHTS_CONNECTION_STRING`` variable is set)."""

    use_entra: bool = False  # ingest with a managed identity (Entra), not the instrumentation key
    managed_identity_client_id: str = ""  # user-assigned identity; empty = system-assigned
    capture_content: bool = False  # prompt and completion text on the spans (gen_ai.*.messages)
    live_metrics: bool = False  # Live Metrics stream (sends data continuously; off by default)


class Settings(_Section):
    azure_openai: AzureOpenAISettings = Field(default_factory=AzureOpenAISettings)
    tenant_azure_openai_mappings: dict[str, str] = Field(default_factory=dict)
    chat_completions_options: ChatCompletionsOptions = Field(default_factory=ChatCompletionsOptions)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    key_vault_name: str = ""
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    state_store: StateStoreSettings = Field(default_factory=StateStoreSettings)
    remote_write: RemoteWriteSettings = Field(default_factory=RemoteWriteSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    azure_web_jobs_storage: StorageConnectionSettings = Field(
        default_factory=StorageConnectionSettings
    )
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    pricing: dict[str, PriceSettings] = Field(default_factory=dict)

    @field_validator("tenant_azure_openai_mappings", mode="after")
    @classmethod
    def _normalise_tenants(cls, value: dict[str, str]) -> dict[str, str]:
        if not all(k.isascii() for k in value):
            raise ValueError("tenant names must be ASCII (letters, digits, '.', '_', '-')")
        return {k.strip().lower(): v.strip() for k, v in value.items()}

    @property
    def folds_unknown_tenants(self) -> bool:
        """``Prometheus:FoldUnknownTenants``, defaulting to on when callers are authenticated."""
        fold = self.prometheus.fold_unknown_tenants
        return self.auth.mode != "none" if fold is None else fold

    def service_named(self, name: str) -> tuple[str, ServiceSettings] | None:
        """Case-insensitive lookup of a configured service; returns its configured name too."""
        for key, service in self.azure_openai.services.items():
            if key.lower() == name.lower():
                return key, service
        return None


SECTIONS = frozenset(_alias(name) for name in Settings.model_fields)


def validate_settings(tree: Mapping[str, Any]) -> Settings:
    """Turn a merged, lower-cased configuration tree into :class:`Settings` or fail naming the key."""
    try:
        settings = Settings.model_validate(_field_keys(tree))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigurationError(_key_path(tree, first["loc"]), first["msg"]) from None
    for tenant, service in settings.tenant_azure_openai_mappings.items():
        if settings.service_named(service) is None:
            known = ", ".join(settings.azure_openai.services) or "none"
            raise ConfigurationError(
                f"TenantAzureOpenAIMappings:{tenant}",
                f"names instance '{service}', which is not under AzureOpenAI:Services "
                f"(configured: {known})",
            )
    _check_auth(settings.auth)
    return settings


def _check_auth(auth: AuthSettings) -> None:
    """What one field cannot say: required keys per mode, and the hash format (never echoed)."""
    if "jwt" in auth.modes:
        required = (("Issuer", auth.jwt.issuer, "https://login.microsoftonline.com/<tenant-id>/v2.0"),
                    ("Audience", auth.jwt.audience, "the gateway app's client id"))
        for key, value, example in required:
            if not value.strip():
                problem = f"is required when Auth:Mode is {auth.mode} (e.g. {example})"
                raise ConfigurationError(f"Auth:Jwt:{key}", problem)
    hint = "generate one with: python -m clients.cli keygen <tenant>"
    shape = "must be sha256:<64 hex digits>[;sha256:<64 hex digits>]"
    for tenant, secret in auth.keys.items():
        name = tenant.strip()  # the full rule (core.access.normalise_tenant) runs again at build
        if not name.isascii() or not _TENANT_NAME.match(name) or not name.strip("."):
            raise ConfigurationError(f"Auth:Keys:{tenant}", "the tenant name must be ASCII letters, digits, "
                                     "'.', '_' or '-' (at most 64, not only dots)")
        hashes = [h.strip() for h in secret.get_secret_value().split(";") if h.strip()]
        if not hashes or not all(KEY_HASH.match(h) for h in hashes):
            raise ConfigurationError(f"Auth:Keys:{tenant}", f"{shape}; {hint}")
    for key, secret in (("Auth:MetricsKey", auth.metrics_key), ("Auth:AdminKeys", auth.admin_keys)):
        hashes = [h.strip() for h in secret.get_secret_value().split(";") if h.strip()]
        if not all(KEY_HASH.match(h) for h in hashes):
            raise ConfigurationError(key, f"{shape}; {hint} --metrics")
    if "keys" in auth.modes and not auth.keys:
        raise ConfigurationError("Auth:Keys", f"no tenant key is configured but Auth:Mode is {auth.mode}; "
                                 f"set Auth:Keys:<tenant>=sha256:<hex> ({hint})")


def _field_keys(tree: Mapping[str, Any], depth: tuple[str, ...] = ()) -> dict[str, Any]:
    """Lower-case field names for the models; keep instance names as written."""
    # Instance names as written; tenant names too, so that validation sees them before any
    # lower() (which folds the Kelvin sign into 'k').
    keep_case = depth in (("azureopenai", "services"), ("auth", "keys"), ("tenantazureopenaimappings",))
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = str(key) if keep_case else str(key).lower()
        out[name] = _field_keys(value, (*depth, name)) if isinstance(value, Mapping) else value
    return out


def _key_path(tree: Mapping[str, Any], loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as the configuration key a user would write."""
    parts: list[str] = []
    model: type[BaseModel] | None = Settings
    dict_item: type[BaseModel] | None = None
    in_dict = False
    for item in loc:
        name = str(item)
        if in_dict:  # a dict key (instance name, tenant): shown as written
            parts.append(_HISTOGRAM_NAMES.get(name, name))
            model, in_dict = dict_item, False
            continue
        field = _field_for(model, name)
        if field is None or model is None:
            parts.append(name)
            model = None
            continue
        parts.append(display_name(field))
        annotation = model.model_fields[field].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        args: tuple[object, ...] = getattr(annotation, "__args__", ())
        in_dict = getattr(annotation, "__origin__", None) is dict and len(args) == 2
        value_type = args[-1] if in_dict else None
        dict_item = (value_type if isinstance(value_type, type) and issubclass(value_type, BaseModel)
                     else None)
        model = None
    return ":".join(parts)


def _field_for(model: type[BaseModel] | None, alias: str) -> str | None:
    if model is None:
        return None
    return next((f for f in model.model_fields if _alias(f) == alias), None)
