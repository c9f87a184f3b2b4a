"""The gateway's shared core. Hosts (Functions, local server, gRPC) use only what is listed here."""

from ._build import build_gateway, configure_telemetry
from ._conversation import parse_conversation
from ._errors import (
    ConfigurationError,
    GatewayError,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ._gateway import ChatStream, Gateway
from ._values import ChatMessage, Completion, Usage
from .access import resolve_tenant
from .config import SecretSource, Settings, load_settings
from .state import MemoryStateStore, StateStore
from .telemetry import tracing_active

__all__ = [
    "ChatMessage",
    "ChatStream",
    "Completion",
    "ConfigurationError",
    "Gateway",
    "GatewayError",
    "InvalidRequest",
    "MemoryStateStore",
    "PayloadTooLarge",
    "RateLimited",
    "SecretSource",
    "Settings",
    "StateStore",
    "Unauthenticated",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "Usage",
    "build_gateway",
    "configure_telemetry",
    "load_settings",
    "parse_conversation",
    "resolve_tenant",
    "tracing_active",
]
