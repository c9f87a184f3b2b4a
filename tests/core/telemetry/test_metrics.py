"""Token metrics as a dashboard reads them: exact names, labels, buckets, the unknown-tenant fold."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from core import Usage
from core.config import PrometheusSettings
from core.telemetry import GatewayMetrics


def _metrics(**settings: object) -> tuple[GatewayMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return GatewayMetrics(PrometheusSettings.model_validate(settings), registry, ["contoso"]), registry


def test_the_nine_families_carry_the_csharp_sample_names() -> None:
    metrics, registry = _metrics()
    metrics.tokens.record("AlphaOpenAI", "Contoso", "chat", Usage(12, 30))
    metrics.tokens.record("AlphaOpenAI", "contoso", "chat", Usage(8, 70))
    labels = {"openai_name": "alphaopenai", "tenant_name": "contoso", "method_name": "chat"}
    value = registry.get_sample_value
    assert value("openai_prompt_tokens_total", labels) == 20
    assert value("openai_completion_tokens_total", labels) == 100
    assert value("openai_total_tokens_total", labels) == 120
    assert value("openai_total_tokens_processed", labels) == 78  # the last request's tokens
    assert value("openai_prompt_tokens_count", labels) == 2
    assert value("openai_prompt_tokens_sum", labels) == 20
    # Default prompt buckets start at 10, width 10: 12 and 8 land either side of le=10.
    assert value("openai_prompt_tokens_bucket", {**labels, "le": "10.0"}) == 1
    assert value("openai_prompt_tokens_bucket", {**labels, "le": "+Inf"}) == 2
    text = generate_latest(registry).decode()
    assert "# TYPE openai_prompt_tokens histogram" in text
    assert "# TYPE openai_prompt_tokens_total counter" in text


def test_unknown_tenants_fold_into_one_label_when_asked() -> None:
    metrics, registry = _metrics(fold_unknown_tenants=True, unknown_tenant_label="other")
    for tenant in ("contoso", "invented-1", "invented-2"):
        metrics.tokens.record("a", tenant, "stream", Usage(1, 1))
    tenants = {s.labels["tenant_name"] for f in registry.collect() for s in f.samples if "tenant_name" in s.labels}
    assert tenants == {"contoso", "other"}


def test_request_counter_and_latency_by_route_and_status() -> None:
    metrics, registry = _metrics()
    metrics.observe_request("chat", 200, 0.01)
    metrics.observe_request("chat", 429, 0.002)
    assert registry.get_sample_value("gateway_requests_total", {"route": "chat", "status": "429"}) == 1
    assert registry.get_sample_value("gateway_request_duration_seconds_count", {"route": "chat"}) == 2
