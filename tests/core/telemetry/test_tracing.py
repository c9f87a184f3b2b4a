"""core.telemetry's spans through a real OpenTelemetry SDK provider and in-memory exporter (local
to each test: the process-wide provider stays unset). End to end, through the Azure Monitor
exporter, the hosts are covered by tests/http_api/test_rest_tracing.py and
tests/grpc_host/test_grpc_tracing.py."""

from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from core import ChatMessage, Completion, UpstreamUnavailable, Usage
from core.telemetry import Tracing, inject_trace_context, tracing_active
from core.telemetry._azure_monitor import sampler_options

PROMPT = (ChatMessage("system", "Be brief."), ChatMessage("user", "Tell me about Milan"))
DONE = Completion("Milan is in Lombardy.", "AlphaOpenAI", Usage(12, 6), usage_reported=True)
WHERE = {"tenant": "contoso", "instance": "AlphaOpenAI", "model": "gpt-4o",
         "endpoint": "https://alpha.openai.azure.com/", "attempt": 1, "prompt": PROMPT}


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def tracing(spans: InMemorySpanExporter, capture: bool = False) -> Tracing:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return Tracing(provider.get_tracer("test"), capture_content=capture)


def test_an_attempt_is_a_genai_client_span_with_usage_and_no_content(spans: InMemorySpanExporter) -> None:
    with tracing(spans).attempt("chat", **WHERE) as attempt:
        attempt.finish(DONE, "gpt-4o-2024-08-06", ("stop",))
    [span] = spans.get_finished_spans()
    assert span.name == "chat gpt-4o" and span.kind is SpanKind.CLIENT
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "azure.ai.openai",
        "gen_ai.system": "azure.ai.openai", "gen_ai.request.model": "gpt-4o",
        "server.address": "alpha.openai.azure.com", "server.port": 443, "peer.service": "AlphaOpenAI",
        "gateway.tenant": "contoso", "gateway.instance": "AlphaOpenAI", "gateway.attempt": 1,
        "gateway.limited": False, "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 6,
        "gateway.usage_source": "reported", "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.finish_reasons": ("stop",),
    }


def test_capture_content_adds_the_messages(spans: InMemorySpanExporter) -> None:
    estimated = Completion("Milan is in Lombardy.", "AlphaOpenAI", Usage(12, 6), usage_reported=False)
    with tracing(spans, capture=True).attempt("chat", **WHERE) as attempt:
        attempt.finish(estimated)
    attributes = spans.get_finished_spans()[0].attributes or {}
    assert json.loads(str(attributes["gen_ai.input.messages"]))[1]["parts"][0]["content"] == "Tell me about Milan"
    assert "Lombardy" in str(attributes["gen_ai.output.messages"])
    assert attributes["gateway.usage_source"] == "estimated"


def test_a_failed_attempt_says_why_and_the_error_still_propagates(spans: InMemorySpanExporter) -> None:
    with pytest.raises(UpstreamUnavailable), tracing(spans).attempt("chat", **WHERE):
        raise UpstreamUnavailable("Azure OpenAI instance 'AlphaOpenAI' is unavailable (503)")
    [span] = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["gateway.error"] == "UpstreamUnavailable"


def test_a_handed_over_span_stays_open_until_the_stream_finishes(spans: InMemorySpanExporter) -> None:
    with tracing(spans).attempt("chat", **WHERE) as attempt:
        attempt.hand_over()
        assert inject_trace_context({})["traceparent"].split("-")[2]  # the attempt is current inside
    assert spans.get_finished_spans() == ()
    attempt.finish(DONE)
    attempt.finish(DONE)  # once only
    assert len(spans.get_finished_spans()) == 1


def test_limited_marks_the_request_span(spans: InMemorySpanExporter) -> None:
    t = tracing(spans)
    provider_tracer = t._tracer
    assert provider_tracer is not None
    with provider_tracer.start_as_current_span("POST /openai/chat", kind=SpanKind.SERVER):
        t.limited("contoso")
    [server] = spans.get_finished_spans()
    assert server.attributes is not None and server.attributes["gateway.limited"] is True


def test_off_is_a_no_op_and_sends_no_header(spans: InMemorySpanExporter) -> None:
    assert not tracing_active()  # no SDK installed process-wide in the test run
    off = Tracing()
    with off.attempt("chat", **WHERE) as attempt:
        assert inject_trace_context({"Content-Type": "application/json"}) == {"Content-Type": "application/json"}
        attempt.finish(DONE)
    assert not off.enabled and spans.get_finished_spans() == ()


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, {"sampler_type": "parentbased_always_on", "sampling_arg": 1.0}),
    ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
     {"sampler_type": "parentbased_trace_id_ratio", "sampling_arg": 0.25}),
    ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "nope"},
     {"sampler_type": "trace_id_ratio", "sampling_arg": 1.0}),
    ({"OTEL_TRACES_SAMPLER": "always_off"}, {"sampler_type": "always_off", "sampling_arg": 1.0}),
    ({"OTEL_TRACES_SAMPLER": "microsoft.rate_limited", "OTEL_TRACES_SAMPLER_ARG": "5"}, {}),
])
def test_the_sampler_follows_otel_traces_sampler(environ: dict[str, str], expected: dict[str, object]) -> None:
    assert sampler_options(environ) == expected
