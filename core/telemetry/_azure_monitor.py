"""Application Insights through the ``azure-monitor-opentelemetry`` distro: the only module that
imports it. A host calls :func:`configure_azure_monitor_tracing` once per process, before it builds
the gateway (the distro installs process-wide providers).

- On only when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set; otherwise nothing is loaded.
- ``Telemetry:UseEntra``: ingestion authenticated with a managed identity (no key in the process).
- Sampler: ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` when set; otherwise
  ``parentbased_always_on`` (a caller's sampled trace is always recorded, its unsampled one never,
  root traces always). The distro's own default, ``microsoft.rate_limited`` at 5 traces/s, ignores
  a remote parent's decision and drops spans of sampled callers under load.
- Live Metrics off unless ``Telemetry:LiveMetrics``; performance counters off (a processor on
  every span; Prometheus already has the process metrics). The distro's FastAPI instrumentation is
  off: FastAPI traces requests natively once a provider is installed (http_api/app.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from azure.monitor.opentelemetry import configure_azure_monitor

from ..config import TelemetrySettings

log = logging.getLogger("core.telemetry")
CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
# OTEL_TRACES_SAMPLER values the distro spells its own way.
_SAMPLER_ALIASES = {"traceidratio": "trace_id_ratio", "parentbased_traceidratio": "parentbased_trace_id_ratio"}
_RATIO_SAMPLERS = ("trace_id_ratio", "parentbased_trace_id_ratio")


def configure_azure_monitor_tracing(
    settings: TelemetrySettings, environ: Mapping[str, str], service_name: str = "openai-gateway"
) -> bool:
    """Install the distro's tracer and logger providers; False (nothing done) without a connection string.

    ``service_name`` is the role name on the Application Map unless ``OTEL_SERVICE_NAME`` says otherwise.
    """
    connection_string = environ.get(CONNECTION_STRING, "").strip()
    if not connection_string:
        return False
    from opentelemetry.sdk.resources import Resource

    options: dict[str, Any] = {
        "connection_string": connection_string,
        "resource": Resource.create({} if environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}),
        "enable_live_metrics": settings.live_metrics,
        "enable_performance_counters": False,  # a processor on every span; Prometheus has these
        "instrumentation_options": {"fastapi": {"enabled": False}},
        **sampler_options(environ),
    }
    if settings.use_entra:
        from azure.identity import ManagedIdentityCredential

        client_id = settings.managed_identity_client_id or None
        options["credential"] = ManagedIdentityCredential(client_id=client_id)
    configure_azure_monitor(**options)
    _no_feedback(logging.getLogger(environ.get("PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME", "")))
    log.info("traces and logs go to Application Insights (%s)", _sampler_text(environ))
    return True


def _no_feedback(logger: logging.Logger) -> None:
    """The exporter's and azure-core's own records stay local: exporting "export failed" would
    fail again and feed itself (the console handler still shows them)."""
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    def keep(record: logging.LogRecord) -> bool:
        return not record.name.startswith(("azure.monitor", "azure.core", "opentelemetry"))

    for handler in logger.handlers:
        if isinstance(handler, LoggingHandler):
            handler.addFilter(keep)


def sampler_options(environ: Mapping[str, str]) -> dict[str, Any]:
    """The distro's ``sampler_type`` / ``sampling_arg`` for ``OTEL_TRACES_SAMPLER[_ARG]``.

    The distro reads the microsoft.* samplers from the environment itself (returns {} for them);
    standard OpenTelemetry names are passed explicitly, the default being ``parentbased_always_on``.
    """
    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    if name.startswith("microsoft."):
        return {}
    name = _SAMPLER_ALIASES.get(name, name)
    ratio = 1.0
    if name in _RATIO_SAMPLERS:
        try:
            ratio = min(1.0, max(0.0, float(environ.get("OTEL_TRACES_SAMPLER_ARG", "1"))))
        except ValueError:
            log.warning("OTEL_TRACES_SAMPLER_ARG is not a number between 0 and 1; sampling everything")
    return {"sampler_type": name, "sampling_arg": ratio}


def _sampler_text(environ: Mapping[str, str]) -> str:
    options = sampler_options(environ)
    if not options:
        return f"sampler {environ.get('OTEL_TRACES_SAMPLER')}"
    return f"sampler {options['sampler_type']} {options['sampling_arg']}"
