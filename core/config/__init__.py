"""Settings: the C# sample's sections plus the gateway's own, from JSON, environment and Key Vault."""

from ._base import display_name
from ._models import (
    SECTIONS,
    AzureOpenAISettings,
    ChatCompletionsOptions,
    CircuitBreakerSettings,
    GatewaySettings,
    HistogramSettings,
    PrometheusSettings,
    RemoteWriteSettings,
    ServiceSettings,
    Settings,
    StateStoreSettings,
    StorageConnectionSettings,
    validate_settings,
)
from ._port import SecretSource
from ._sources import SecretSourceFactory, from_flat_keys, load_settings, merge
from ._tenancy import (
    AuthSettings,
    JwtSettings,
    LedgerSettings,
    LimitsSettings,
    PriceSettings,
    TelemetrySettings,
    TenantLimitSettings,
)

__all__ = [
    "SECTIONS",
    "AuthSettings",
    "AzureOpenAISettings",
    "ChatCompletionsOptions",
    "CircuitBreakerSettings",
    "GatewaySettings",
    "HistogramSettings",
    "JwtSettings",
    "LedgerSettings",
    "LimitsSettings",
    "PriceSettings",
    "PrometheusSettings",
    "RemoteWriteSettings",
    "SecretSource",
    "SecretSourceFactory",
    "ServiceSettings",
    "Settings",
    "StateStoreSettings",
    "StorageConnectionSettings",
    "TelemetrySettings",
    "TenantLimitSettings",
    "display_name",
    "from_flat_keys",
    "load_settings",
    "merge",
    "validate_settings",
]
