"""Token and request metrics (Prometheus), traces (OpenTelemetry); remote write lives in
``_remote_write``, the Application Insights distro in ``_azure_monitor`` (loaded only when on)."""

from ._metrics import GatewayMetrics, RateLimitMetrics, TokenCollector
from ._tracing import Attempt, Tracing, inject_trace_context, own_tracer, tracing_active

__all__ = ["Attempt", "GatewayMetrics", "RateLimitMetrics", "TokenCollector", "Tracing", "inject_trace_context",
           "own_tracer", "tracing_active"]
