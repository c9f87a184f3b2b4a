"""The export process builds the envelopes of the gateway's own spans itself (core/telemetry/_envelopes.py,
``Envelopes``) instead of the Azure Monitor exporter's conversion: what reaches Application Insights
must not change. Each span here goes both ways (the real exporter's ``_convert_span_to_envelope`` on
the rebuilt ``ReadableSpan``, and the export process's exporter on the record) and the JSON sent to
the ingestion endpoint, and the form kept in offline storage, must be the same."""

from __future__ import annotations

import collections
import datetime
import enum
import json
import math
import random
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from azure.monitor.opentelemetry.exporter import ApplicationInsightsSampler, AzureMonitorTraceExporter
from azure.monitor.opentelemetry.exporter._generated.exporter._utils.model_base import SdkJSONEncoder
from azure.monitor.opentelemetry.exporter._generated.exporter.models import (
    ContextTagKeys,
    MonitorBase,
    RequestData,
    TelemetryItem,
)
from azure.monitor.opentelemetry.exporter._utils import _get_telemetry_type, ns_to_duration
from azure.monitor.opentelemetry.exporter.statsbeat.customer._state import get_customer_stats_manager
from azure.monitor.opentelemetry.exporter.statsbeat.customer._utils import (
    _get_telemetry_success_flag,
    track_successful_items,
)
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler
from opentelemetry.trace import SpanKind, Status, StatusCode

from core import Completion, UpstreamUnavailable, Usage
from core.telemetry import Tracing
from core.telemetry._envelope_json import Rfc3339, duration, encoded
from core.telemetry._export_child import count_sent, exporter_for, span_from
from core.telemetry._pipe_span import PipeSpan, PipeTracer
from core.telemetry._span_pipe import span_record

CONNECTION = "InstrumentationKey=00000000-0000-4000-8000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"
CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
WHERE = {"tenant": "contoso", "instance": "AlphaOpenAI", "model": "gpt-4o",
         "endpoint": "https://alpha.openai.azure.com/", "attempt": 1}
REST = {"url.scheme": "http", "http.request.method": "POST", "network.protocol.version": "1.1",
        "server.address": "127.0.0.1", "server.port": 8000, "url.path": "/openai/chat", "url.query": "tenant=contoso",
        "http.route": "/openai/chat"}


class Records(SpanProcessor):
    """Every ended span as the span pipe records it, from SDK spans and from :class:`PipeSpan`."""

    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.records.append(span_record(span))

    def put(self, span: PipeSpan) -> None:
        self.records.append(span.record())


def request_like(tracer: trace.Tracer, tracing: Tracing, status: int = 200, fail_first: bool = False) -> None:
    """A REST request span in the caller's trace with its attempts (a failed one first on failover)."""
    parent = propagate.extract({"traceparent": CALLER})
    with tracer.start_as_current_span("POST /openai/chat", context=parent, kind=SpanKind.SERVER,
                                      attributes=REST) as server:
        if fail_first:
            with pytest.raises(UpstreamUnavailable), tracing.attempt("chat", **WHERE):  # type: ignore[arg-type]
                raise UpstreamUnavailable("AlphaOpenAI answered 503")
        where = {**WHERE, "instance": "BetaOpenAI", "attempt": 2} if fail_first else WHERE
        with tracing.attempt("chat", prompt=(), **where) as attempt:  # type: ignore[arg-type]
            attempt.finish(Completion("Milan is in Lombardy.", "AlphaOpenAI", Usage(12, 6), usage_reported=True),
                           model="gpt-4o-2024-08-06", finish_reasons=["stop"])
        server.set_attributes({"http.response.status_code": status, **({"error.type": str(status)} if status >= 500
                                                                        else {})})
        if status >= 500:
            server.set_status(StatusCode.ERROR)


def grpc_like(tracer: trace.Tracer, tracing: Tracing) -> None:
    parent = propagate.extract({"traceparent": CALLER})
    service = "OpenAiRestApi.OpenAIServiceGrpc"
    with tracer.start_as_current_span(f"/{service}/GetChatCompletions", context=parent, kind=SpanKind.SERVER,
                                      record_exception=False, attributes={
                                          "rpc.system": "grpc", "rpc.service": service,
                                          "rpc.method": "GetChatCompletions"}) as span:
        with tracing.attempt("chat", **WHERE):  # type: ignore[arg-type]
            pass
        span.set_attribute("rpc.grpc.status_code", 14)
        span.set_status(Status(StatusCode.ERROR, "UNAVAILABLE"))


def others(tracer: trace.Tracer, tracing: Tracing) -> None:
    """Spans the direct builder leaves to the exporter: events, exceptions, Azure SDK calls, links."""
    with tracer.start_as_current_span("POST /openai/chat", kind=SpanKind.SERVER, attributes=REST) as server:
        server.add_event("retrying", {"gateway.attempt": 2})
        server.record_exception(ValueError("bad input"))
    tracer.start_span("Table.upsert_entity", kind=SpanKind.CLIENT,
                      attributes={"az.namespace": "Microsoft.Storage", "http.request.method": "PATCH",
                                  "url.full": "https://acct.table.core.windows.net/t", "server.address": "acct"}).end()
    linked = tracer.start_span("linked", kind=SpanKind.INTERNAL)
    linked.end()
    tracer.start_span("with link", kind=SpanKind.CLIENT, links=[trace.Link(linked.get_span_context())],
                      attributes={"gen_ai.system": "azure.ai.openai"}).end()
    tracer.start_span("user agent", kind=SpanKind.SERVER, attributes={**REST, "user_agent.original": "AlwaysOn"}).end()
    tracer.start_span("client", kind=SpanKind.SERVER, attributes={**REST, "client.address": "10.0.0.1"}).end()
    lone = {**REST, "gateway.tenant": "contoso\ud800"}  # not UTF-8: orjson refuses it, the json module escapes it
    tracer.start_span("lone surrogate", kind=SpanKind.SERVER, attributes=lone).end()


def repeated(tracer: trace.Tracer, tracing: Tracing) -> None:
    """Spans of one shape again with other values (the builder keeps what a shape decides), a shared
    attribute unset by the span itself, a value no cache can be keyed by, one equal to an earlier
    value but of another type."""
    for status in (200, 502, 200, 404, 200):
        request_like(tracer, tracing, status=status)
    request_like(tracer, tracing, fail_first=True)
    with tracer.start_as_current_span("POST /openai/chat", kind=SpanKind.SERVER,
                                      attributes={**REST, "url.path": "/openai/stream"}):
        with tracing.attempt("chat", **{**WHERE, "tenant": "fabrikam"}):  # type: ignore[arg-type]
            trace.get_current_span().set_attribute("gateway.instance", None)  # type: ignore[arg-type]
    tracer.start_span("POST /openai/chat", kind=SpanKind.SERVER,
                      attributes={**REST, "url.query": ["a=1", "b=2"]}).end()
    for port in (8000, 8000.0):  # equal, hashed alike, written otherwise
        tracer.start_span("POST /openai/chat", kind=SpanKind.SERVER, attributes={**REST, "server.port": port}).end()


SCENARIOS: dict[str, Callable[[trace.Tracer, Tracing], None]] = {
    "chat": request_like,
    "failover": lambda tracer, tracing: request_like(tracer, tracing, fail_first=True),
    "upstream error": lambda tracer, tracing: request_like(tracer, tracing, status=502),
    "grpc": grpc_like,
    "content": lambda tracer, tracing: request_like(tracer, Tracing(tracing._tracer, capture_content=True)),
    "left to the exporter": others,
    "repeated": repeated,
}


def records_of(scenario: Callable[[trace.Tracer, Tracing], None], sampler: Sampler, direct: bool) -> list[Any]:
    resource = Resource.create({"service.name": "envelope-test"})
    provider = TracerProvider(resource=resource, sampler=sampler, shutdown_on_exit=False)
    records = Records()
    provider.add_span_processor(records)
    if direct:  # the gateway's own spans as the span pipe's PipeTracer makes them
        scenario(PipeTracer(provider, records, "fastapi", "0.1", "https://opentelemetry.io/schemas/1.44.0"),
                 Tracing(PipeTracer(provider, records, "core.gateway")))
    else:
        scenario(provider.get_tracer("fastapi"), Tracing(provider.get_tracer("core.gateway")))
    return records.records


def wire(items: list[Any]) -> list[Any]:
    return [json.loads(json.dumps(item, cls=SdkJSONEncoder, exclude_readonly=True)) for item in items]


def sent(items: list[Any]) -> Any:
    """The JSON value of the batch the generated client's ``track`` posts, serialized its own way."""
    return json.loads(json.dumps(items, cls=SdkJSONEncoder, exclude_readonly=True))


def sdk_stats(items: list[Any]) -> list[Any]:
    return [(_get_telemetry_type(item), _get_telemetry_success_flag(item)) for item in items]


def counted(track: Callable[[list[Any]], None], items: list[Any]) -> dict[str, int]:
    """What ``track`` adds to the customer SDK stats' sent items, by telemetry type (the real manager,
    initialized by the exporter's constructor; nothing is exported from it during a test)."""
    manager = get_customer_stats_manager()
    assert manager.is_initialized
    before = dict(manager._counters.total_item_success_count)
    track(items)
    after = manager._counters.total_item_success_count
    return {kind: after[kind] - before.get(kind, 0) for kind in after if after[kind] != before.get(kind, 0)}


def stored(items: list[Any]) -> list[Any]:
    return [json.loads(json.dumps(item.as_dict())) for item in items]


@pytest.mark.parametrize("sampler", [ParentBased(ALWAYS_ON), ApplicationInsightsSampler(1.0)], ids=["parentbased",
                                                                                                  "microsoft"])
@pytest.mark.parametrize("direct", [False, True], ids=["sdk-spans", "pipe-spans"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_export_process_sends_the_envelopes_the_exporter_makes(name: str, direct: bool, sampler: Sampler,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED", "true")
    records = records_of(SCENARIOS[name], sampler, direct)
    assert records
    exporter, resource = exporter_for({"connection_string": CONNECTION, "resource": {"service.name": "envelope-test"}})
    stock = AzureMonitorTraceExporter(connection_string=CONNECTION, disable_offline_storage=True)
    ours, theirs = [], []
    built = 0
    for record in records:
        ours.append(exporter._span_to_envelope(record))
        ours.extend(exporter._span_events_to_envelopes(record))
        built += exporter._envelopes.build(record) is not None
        span = span_from(record, resource, {})
        theirs.append(stock._span_to_envelope(span))
        theirs.extend(stock._span_events_to_envelopes(span))
    assert wire(ours) == wire(theirs)
    batch = [stock._get_otel_resource_envelope(resource, None), *ours]  # export() sends the resource first
    assert json.loads(encoded(batch) or b"") == sent(batch)  # what the export process posts instead (orjson)
    assert json.loads(encoded(theirs) or b"") == sent(theirs)
    assert stored(ours) == stored(theirs)
    assert sdk_stats(ours) == sdk_stats(theirs)  # what the exporter's customer SDK stats count
    sent_counts = counted(count_sent, ours)  # the export process's count after a batch is sent: once per type
    assert sent_counts == counted(track_successful_items, theirs)
    assert sum(sent_counts.values()) == len(ours)
    if name == "left to the exporter":
        assert built == 0
        assert "ExceptionData" in json.dumps(wire(ours))
    else:  # the gateway's own spans all take the direct way, and orjson writes their whole batch
        assert built == len(records)
        assert b'": ' not in (encoded(batch) or b"")  # (the json module's separators: none of its items)
    if isinstance(sampler, ApplicationInsightsSampler):
        assert all(item["sampleRate"] == 100.0 for item in wire(ours))


def odd_item(**raw: Any) -> TelemetryItem:
    """An item whose request data holds ``raw`` as it is (the generated constructors would convert
    datetimes, bytes, enums... first; a model's fields set later, or other models, may not)."""
    item = TelemetryItem(name="Microsoft.ApplicationInsights.Request", time="2024-05-01T10:00:00Z",
                         tags={ContextTagKeys.AI_CLOUD_ROLE: "r"}, data=MonitorBase(
                             base_type="RequestData", base_data=RequestData(id="1", duration="0.00:00:00.001",
                                                                            success=True, response_code="200")))
    item.data.base_data._data.update(raw)
    return item


class Label(str, enum.Enum):  # noqa: UP042 (as the generated models' enums)
    A = "a"


class Level(enum.IntEnum):
    HIGH = 3


class Money(float):
    pass


ODD = {  # values orjson writes differently from the json module, or not at all: the same JSON value still
    "non-finite measurement": {"measurements": {"a": math.nan, "b": math.inf, "c": -math.inf}},
    "null": {"properties": {"k": None}},
    "big int": {"measurements": {"a": 2**70}},
    "non-ascii": {"properties": {"k": "Milano \u00e8 \U0001f600 \x00\n\"\\"}},
    "a lone surrogate": {"properties": {"k": "\ud800"}},
    "keys not str": {"properties": {1.5: "v", 2: "w", True: "x", None: "y"}},
    "str enum keys": {"properties": {Label.A: "v", "b": "w"}},
    "datetimes": {"a": datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
                  "b": datetime.datetime(2024, 5, 1, 12, 0, 0, 5), "c": datetime.date(2024, 5, 1),
                  "d": datetime.time(1, 2, 3), "e": datetime.timedelta(seconds=90.5)},
    "decimal and bytes": {"d": Decimal("1.25"), "b": b"\x00\xff", "c": bytearray(b"ab")},
    "subclasses and enums": {"properties": {"k": Label.A}, "l": Level.HIGH, "m": Money(2.5),
                             "t": collections.namedtuple("Pair", "a b")(1, 2), "o": collections.OrderedDict(x=1),
                             "u": (1, "2")},
}


@pytest.mark.parametrize("name", list(ODD))
def test_the_batch_json_is_the_stock_one_for_values_orjson_writes_otherwise(name: str) -> None:
    items = [odd_item(), odd_item(**ODD[name]), odd_item()]
    if name == "non-finite measurement":  # the json module writes NaN/Infinity: not JSON, Python reads it back
        assert b"NaN" in (encoded(items) or b"")
    assert json.loads(encoded(items) or b"") == sent(items)


def test_an_unserializable_batch_fails_as_the_stock_one() -> None:
    with pytest.raises(TypeError):
        json.dumps([odd_item(properties={"k": {1, 2}})], cls=SdkJSONEncoder, exclude_readonly=True)
    assert encoded([odd_item(properties={"k": {1, 2}})]) is None  # track then serializes (and fails) its own way


def test_time_and_duration_are_written_as_the_exporter_writes_them() -> None:
    """``TelemetryItem.time`` is the exporter's ``datetime.fromtimestamp(ns / 1e9, UTC)`` as ISO 8601
    (microseconds rounded half to even from the float, none written when 0), its duration
    ``ns_to_duration``: at every boundary and at random."""
    rng = random.Random(16)
    second = 10**9
    times = [0, 1, 499, 500, 501, 999, 1000, second - 500, second - 501, second - 499, second]
    for _ in range(20000):
        whole = rng.randrange(0, 4 * 10**9) * second
        times += [whole + rng.randrange(second), whole + rng.randrange(10**6) * 1000 + rng.choice((499, 500, 501)),
                  whole + second - 500 + rng.randrange(-600, 600), whole, whole + rng.randrange(1000) * 10**6]
    rfc3339 = Rfc3339()
    for ns in times:
        assert rfc3339(ns) == datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.UTC).isoformat().replace(
            "+00:00", "Z"), ns
    durations = [0, 499_999, 500_000, 59_999_499_999, 59_999_500_000, 60 * second, 86_400 * second, -1, -500_001]
    durations += [rng.randrange(0, 10**14) for _ in range(20000)]
    for ns in durations:
        assert duration(ns) == ns_to_duration(ns), ns
