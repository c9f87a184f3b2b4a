"""Token and request metrics (Prometheus), traces (OpenTelemetry); remote write lives in
``_remote_write``, the Application Insights distro in ``_azure_monitor`` (loaded only when on)."""

from ._current import attach as attach_context
from ._current import detach as detach_context
from ._current import with_span
from ._metrics import GatewayMetrics, RateLimitMetrics, TokenCollector
from ._tracing import Attempt, Tracing, own_tracer, tracing_active
from ._w3c import ASK, parent_context, remote_parent
from ._w3c import extract as extract_trace_context
from ._w3c import inject as inject_trace_context

__all__ = ["ASK", "Attempt", "GatewayMetrics", "RateLimitMetrics", "TokenCollector", "Tracing", "attach_context",
           "detach_context", "extract_trace_context", "inject_trace_context", "own_tracer", "parent_context",
           "remote_parent", "tracing_active", "with_span"]
