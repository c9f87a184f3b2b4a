"""Settings: the C# sample's sections plus the gateway's own, from JSON, environment and Key Vault."""

from ._models import (
    SECTIONS,
    AzureOpenAISettings,
    ChatCompletionsOptions,
    GatewaySettings,
    HistogramSettings,
    PrometheusSettings,
    RemoteWriteSettings,
    ServiceSettings,
    Settings,
    StateStoreSettings,
    StorageConnectionSettings,
    TelemetrySettings,
    display_name,
    validate_settings,
)
from ._port import SecretSource
from ._sources import SecretSourceFactory, from_flat_keys, load_settings, merge

__all__ = [
    "SECTIONS",
    "AzureOpenAISettings",
    "ChatCompletionsOptions",
    "GatewaySettings",
    "HistogramSettings",
    "PrometheusSettings",
    "RemoteWriteSettings",
    "SecretSource",
    "SecretSourceFactory",
    "ServiceSettings",
    "Settings",
    "StateStoreSettings",
    "StorageConnectionSettings",
    "TelemetrySettings",
    "display_name",
    "from_flat_keys",
    "load_settings",
    "merge",
    "validate_settings",
]
