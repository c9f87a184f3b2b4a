"""The gateway's shared core. Hosts (Functions, local server, gRPC) use only what is listed here."""

from ._build import build_gateway, configure_telemetry
from ._compat import RelayedStream, RelayResponse
from ._conversation import parse_conversation
from ._errors import (
    AuthUnavailable,
    ConfigurationError,
    Forbidden,
    GatewayError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    UpstreamError,
    UpstreamMisconfigured,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ._gateway import Gateway
from ._heap import freeze_startup_heap
from ._stream import ChatStream
from ._values import Budget, ChatMessage, Completion, Usage
from .access import Credentials, resolve_tenant
from .config import SecretSource, Settings, load_settings
from .state import MemoryStateStore, StateStore
from .telemetry import extract_trace_context, own_tracer, tracing_active
from .upstream import Operation

__all__ = [
    "AuthUnavailable",
    "Budget",
    "ChatMessage",
    "ChatStream",
    "Completion",
    "ConfigurationError",
    "Credentials",
    "Forbidden",
    "Gateway",
    "GatewayError",
    "InvalidRequest",
    "MemoryStateStore",
    "NotFound",
    "Operation",
    "PayloadTooLarge",
    "RateLimited",
    "RelayResponse",
    "RelayedStream",
    "SecretSource",
    "Settings",
    "StateStore",
    "Unauthenticated",
    "UpstreamError",
    "UpstreamMisconfigured",
    "UpstreamResponse",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "Usage",
    "build_gateway",
    "configure_telemetry",
    "extract_trace_context",
    "freeze_startup_heap",
    "load_settings",
    "own_tracer",
    "parse_conversation",
    "resolve_tenant",
    "tracing_active",
]
