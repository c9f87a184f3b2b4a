"""Token and request metrics (Prometheus); remote write lives in ``_remote_write``."""

from ._metrics import GatewayMetrics, RateLimitMetrics, TokenCollector

__all__ = ["GatewayMetrics", "RateLimitMetrics", "TokenCollector"]
