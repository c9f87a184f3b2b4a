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

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator

from .._errors import ConfigurationError
from ._base import _alias, _Section, display_name
from ._tenancy import (
    AuthSettings,
    LedgerSettings,
    LimitsSettings,
    PriceSettings,
    TelemetrySettings,
    check_auth,
)

_HISTOGRAM_NAMES = {"prompttokens": "PromptTokens", "completiontokens": "CompletionTokens",
                    "totaltokens": "TotalTokens"}


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
    check_auth(settings.auth)
    return settings


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
