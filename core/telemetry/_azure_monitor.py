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
  every span; Prometheus already has the process metrics).
- Tracing is set up here, not by the distro (``disable_tracing``; the distro does logs and
  metrics): the same sampler and exporter, but the span processor is chosen by the host. With
  ``export_process`` (local REST server, gRPC host) spans go to a child process that runs the
  exporter (``_span_pipe``: the envelope conversion off the event loop's GIL); otherwise (the
  Functions worker, or one CPU) the distro's in-process ``BatchSpanProcessor``. The distro's
  GenAI main-agent processor (multi-agent attribution, a dict operation on every span start and
  end) is left out: the gateway has no agents.
- Instrumentations: only Azure SDK tracing (Table storage, Key Vault calls as dependencies). Off:
  FastAPI (FastAPI traces requests natively, http_api/app.py), httpx/httpx2 (the upstream calls
  already have the gateway's GenAI span per attempt), requests/urllib/urllib3 (azure-core's
  transport under the Azure SDK spans: duplicates), django, flask, psycopg2 (not used).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from azure.monitor.opentelemetry import configure_azure_monitor

from ..config import TelemetrySettings

log = logging.getLogger("core.telemetry")
CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
# OTEL_TRACES_SAMPLER values the distro spells its own way.
_SAMPLER_ALIASES = {"traceidratio": "trace_id_ratio", "parentbased_traceidratio": "parentbased_trace_id_ratio"}
_RATIO_SAMPLERS = ("trace_id_ratio", "parentbased_trace_id_ratio")
_UNUSED_INSTRUMENTATIONS = ("fastapi", "httpx", "httpx2", "requests", "urllib", "urllib3", "django", "flask",
                            "psycopg2")


def configure_azure_monitor_tracing(
    settings: TelemetrySettings, environ: Mapping[str, str], service_name: str = "openai-gateway",
    *, export_process: bool = False,
) -> bool:
    """Install the tracer and logger providers; False (nothing done) without a connection string.

    ``service_name`` is the role name on the Application Map unless ``OTEL_SERVICE_NAME`` says otherwise.
    ``export_process``: export spans from a child process (when more than one CPU is usable).
    """
    connection_string = environ.get(CONNECTION_STRING, "").strip()
    if not connection_string:
        return False
    from opentelemetry._logs import get_logger_provider
    from opentelemetry.sdk.resources import Resource

    options: dict[str, Any] = {
        "connection_string": connection_string,
        "resource": Resource.create({} if environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}),
        "enable_live_metrics": settings.live_metrics,
        "enable_performance_counters": False,  # a processor on every span; Prometheus has these
        "instrumentation_options": {name: {"enabled": False} for name in _UNUSED_INSTRUMENTATIONS},
    }
    if settings.use_entra:
        from azure.identity import ManagedIdentityCredential

        client_id = settings.managed_identity_client_id or None
        options["credential"] = ManagedIdentityCredential(client_id=client_id)
    _configure_distro_without_tracing(options)
    resource = getattr(get_logger_provider(), "resource", None) or Resource.create(options["resource"].attributes)
    in_child = export_process and _usable_cpus() > 1
    _install_tracer_provider(settings, environ, options, resource, in_child)
    _no_feedback(logging.getLogger(environ.get("PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME", "")))
    log.info("traces and logs go to Application Insights (%s; spans exported %s)", _sampler_text(environ),
             "by a child process" if in_child else "in-process")
    return True


def _configure_distro_without_tracing(options: Mapping[str, Any]) -> None:
    """The distro's logs and metrics. It ignores ``disable_tracing=True`` (its environment default
    overwrites the argument), so ``OTEL_TRACES_EXPORTER=none`` is set for the call only."""
    saved = os.environ.get("OTEL_TRACES_EXPORTER")
    os.environ["OTEL_TRACES_EXPORTER"] = "none"
    try:
        configure_azure_monitor(**options)
    finally:
        if saved is None:
            del os.environ["OTEL_TRACES_EXPORTER"]
        else:
            os.environ["OTEL_TRACES_EXPORTER"] = saved


def _install_tracer_provider(settings: TelemetrySettings, environ: Mapping[str, str], options: Mapping[str, Any],
                             resource: Any, in_child: bool) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    provider = TracerProvider(sampler=sampler(environ), resource=resource)
    if settings.live_metrics:  # as the distro does: Live Metrics sees every span
        from azure.monitor.opentelemetry.exporter._quickpulse._processor import _QuickpulseSpanProcessor

        provider.add_span_processor(_QuickpulseSpanProcessor())
    processor: SpanProcessor
    if in_child:
        from ._span_pipe import SpanPipe, register

        processor = register(SpanPipe({
            "connection_string": options["connection_string"], "use_entra": settings.use_entra,
            "managed_identity_client_id": settings.managed_identity_client_id, "priority": settings.export_priority,
            "resource": dict(resource.attributes)}, environ), None if settings.live_metrics else provider)
    else:
        from azure.monitor.opentelemetry.exporter import AzureMonitorTraceExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter_options = {k: v for k, v in options.items() if k in ("connection_string", "credential")}
        processor = BatchSpanProcessor(AzureMonitorTraceExporter(**exporter_options))
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    try:  # Azure SDK calls (Table storage, Key Vault) as dependencies, as the distro does
        from azure.core.settings import settings as azure_settings
        from azure.core.tracing.ext.opentelemetry_span import OpenTelemetrySpan

        azure_settings.tracing_implementation = OpenTelemetrySpan
    except ImportError:
        log.warning("azure-core-tracing-opentelemetry is missing: no Azure SDK dependencies in the traces")


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def sampler(environ: Mapping[str, str]) -> Any:
    """The sampler for ``OTEL_TRACES_SAMPLER[_ARG]`` (see :func:`sampler_options`)."""
    from azure.monitor.opentelemetry.exporter import ApplicationInsightsSampler, RateLimitedSampler
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased

    options = sampler_options(environ)
    if not options:  # microsoft.*: the distro's defaults and bounds
        name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
        arg = _number(environ.get("OTEL_TRACES_SAMPLER_ARG", ""))
        if name == "microsoft.rate_limited":
            return RateLimitedSampler(target_spans_per_second_limit=arg if arg is not None and arg >= 0 else 5.0)
        return ApplicationInsightsSampler(sampling_ratio=arg if arg is not None and 0 <= arg <= 1 else 1.0)
    name, ratio = options["sampler_type"], options["sampling_arg"]
    return {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "trace_id_ratio": TraceIdRatioBased(ratio),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_trace_id_ratio": ParentBased(TraceIdRatioBased(ratio)),
    }.get(name, ParentBased(ALWAYS_ON))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


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
