"""Token metrics under the C# sample's names, plus request counters, on an injectable registry.

prometheus-client registers a counter ``x_total`` under the family name ``x``, which collides with
the histogram ``x``. The nine token families therefore come from one custom collector that emits
exactly the exposed names dashboards query:

    gauge      openai_{prompt,completion,total}_tokens_processed   (last request's tokens)
    counter    openai_{prompt,completion,total}_tokens_total
    histogram  openai_{prompt,completion,total}_tokens             (linear buckets from settings)
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from .._values import Budget, Method, Usage
from ..config import HistogramSettings, PrometheusSettings

LABELS = ("openai_name", "tenant_name", "method_name")
KINDS = ("prompt", "completion", "total")
_HISTOGRAM_KEYS = {"prompt": "prompttokens", "completion": "completiontokens", "total": "totaltokens"}


def linear_buckets(spec: HistogramSettings) -> tuple[float, ...]:
    return tuple(spec.start + spec.width * i for i in range(spec.count))


@dataclass
class _Series:
    last: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    totals: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    buckets: list[list[int]] = field(default_factory=list)  # per kind, cumulative on export
    sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])


class TokenCollector:
    """Per (instance, tenant, method) token series; thread-safe (scrapes may come from a thread)."""

    def __init__(
        self, settings: PrometheusSettings, known_tenants: Iterable[str] = (), fold: bool | None = None
    ) -> None:
        self._bounds = tuple(linear_buckets(settings.histograms[_HISTOGRAM_KEYS[k]]) for k in KINDS)
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._lock = threading.Lock()
        self._fold = bool(settings.fold_unknown_tenants if fold is None else fold)
        self._known = frozenset(t.lower() for t in (*known_tenants, *settings.known_tenants))
        self._other = settings.unknown_tenant_label.lower()

    def tenant_label(self, tenant: str) -> str:
        if self._fold and tenant not in self._known:
            return self._other
        return tenant

    def record(self, instance: str, tenant: str, method: Method, usage: Usage) -> None:
        values = (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
        key = (instance.lower(), self.tenant_label(tenant.lower()), method)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = _Series(buckets=[[0] * (len(b) + 1) for b in self._bounds])
                self._series[key] = series
            for i, value in enumerate(values):
                series.last[i] = value
                series.totals[i] += value
                series.sums[i] += value
                series.buckets[i][_bucket_index(self._bounds[i], value)] += 1

    def describe(self) -> list[Metric]:
        return list(self._families({}))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snapshot = {k: _copy(v) for k, v in self._series.items()}
        return self._families(snapshot)

    def _families(self, snapshot: dict[tuple[str, str, str], _Series]) -> Iterator[Metric]:
        for i, kind in enumerate(KINDS):
            gauge = GaugeMetricFamily(
                f"openai_{kind}_tokens_processed",
                f"Number of {kind} tokens of the last request processed by Azure OpenAI.",
                labels=LABELS,
            )
            counter = CounterMetricFamily(
                f"openai_{kind}_tokens",
                f"Total number of {kind} tokens processed by Azure OpenAI.",
                labels=LABELS,
            )
            histogram = HistogramMetricFamily(
                f"openai_{kind}_tokens",
                f"The distribution of {kind} tokens per request processed by Azure OpenAI.",
                labels=LABELS,
            )
            for labels, series in snapshot.items():
                gauge.add_metric(labels, series.last[i])
                counter.add_metric(labels, series.totals[i])
                histogram.add_metric(labels, _cumulative(self._bounds[i], series.buckets[i]),
                                     series.sums[i])
            yield gauge
            yield counter
            yield histogram


def _bucket_index(bounds: tuple[float, ...], value: float) -> int:
    """The first bucket whose upper bound is >= ``value`` (len(bounds): +Inf); bounds ascend."""
    return bisect_left(bounds, value)


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    running = 0
    out: list[tuple[str, float]] = []
    for bound, count in zip((*[repr(float(b)) for b in bounds], "+Inf"), counts, strict=True):
        running += count
        out.append((bound, float(running)))
    return out


def _copy(series: _Series) -> _Series:
    return _Series(list(series.last), list(series.totals), [list(b) for b in series.buckets],
                   list(series.sums))


INSTANCE_STATES = ("closed", "open", "half-open", "cooling", "misconfigured")


class InstanceStates:
    """``gateway_instance_state{openai_name, state}``: 1 for each instance's current state, else 0."""

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, str]] = dict

    def describe(self) -> list[Metric]:
        return [self._family({})]

    def collect(self) -> Iterator[Metric]:
        yield self._family(self.source())

    @staticmethod
    def _family(states: Mapping[str, str]) -> Metric:
        family = GaugeMetricFamily(
            "gateway_instance_state",
            "State of each Azure OpenAI instance (closed, open, half-open, cooling, misconfigured).",
            labels=("openai_name", "state"),
        )
        for name, current in states.items():
            for state in INSTANCE_STATES:
                family.add_metric((name.lower(), state), 1.0 if state == current else 0.0)
        return family


class GatewayMetrics:
    """Everything the gateway records, registered on one registry."""

    def __init__(
        self,
        settings: PrometheusSettings,
        registry: CollectorRegistry,
        known_tenants: Iterable[str],
        fold_unknown_tenants: bool | None = None,
    ) -> None:
        self.tokens = TokenCollector(settings, known_tenants, fold_unknown_tenants)
        registry.register(self.tokens)
        self.requests = Counter(
            "gateway_requests", "Requests handled by the gateway, by route and status.",
            ("route", "status"), registry=registry,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds", "Time to answer a request (streams: to the end).",
            ("route",), registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.upstream_failures = Counter(
            "gateway_upstream_failures", "Failed calls to an Azure OpenAI instance, by reason.",
            ("openai_name", "reason"), registry=registry,
        )
        self.failovers = Counter(
            "gateway_failovers", "Requests moved on from an instance to the next candidate, by reason.",
            ("openai_name", "reason"), registry=registry,
        )
        self.retries = Counter(
            "gateway_upstream_retries",
            "Retries of an instance after waiting for it (no other instance was eligible).",
            ("openai_name",), registry=registry,
        )
        self.cooldown_seconds = Histogram(
            "gateway_cooldown_seconds", "Cool-downs an instance was put in (429, 503 Retry-After).",
            ("openai_name",), registry=registry, buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
        )
        self.misconfigured = Counter(
            "gateway_instance_misconfigured",
            "Calls refused because of the gateway's own settings for an instance, by setting.",
            ("openai_name", "setting"), registry=registry,
        )
        self.tokens_by_source = Counter(
            "gateway_tokens_by_source",
            "Total tokens billed, by whether Azure reported them or the gateway estimated them.",
            (*LABELS, "usage_source"), registry=registry,
        )
        self._states = InstanceStates()
        registry.register(self._states)
        self._by_route: dict[tuple[str, int | str], tuple[Counter, Histogram]] = {}  # labelled children, once
        self._by_source: dict[tuple[str, str, str, bool], Counter] = {}

    def watch_instances(self, states: Callable[[], Mapping[str, str]]) -> None:
        """Expose ``gateway_instance_state`` from ``states()`` (read at scrape time)."""
        self._states.source = states

    def record(self, instance: str, tenant: str, method: Method, usage: Usage, reported: bool) -> None:
        self.tokens.record(instance, tenant, method, usage)
        key = (instance, self.tokens.tenant_label(tenant.lower()), method, reported)  # as many as the series
        child = self._by_source.get(key)
        if child is None:
            source = "reported" if reported else "estimated"
            child = self._by_source[key] = self.tokens_by_source.labels(instance.lower(), key[1], method, source)
        child.inc(usage.total_tokens)

    def observe_request(self, route: str, status: int | str, seconds: float) -> None:
        children = self._by_route.get((route, status))
        if children is None:
            children = self._by_route[(route, status)] = (self.requests.labels(route, str(status)),
                                                          self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)


class RateLimitMetrics:
    """``gateway_rate_limited_requests_total{tenant_name,limit}`` (limit = tokens | requests | store),
    ``gateway_rate_limit_remaining{tenant_name,limit}`` (tokens | requests left in the window, as
    last seen by this replica), ``gateway_rate_limit_store_failures_total{reason}`` and
    ``gateway_rate_limit_store_shared`` (0 while budgets are kept per replica or refused)."""

    def __init__(self, registry: CollectorRegistry, tenant_label: Callable[[str], str]) -> None:
        self._label = tenant_label
        self._refused = Counter(
            "gateway_rate_limited_requests", "Requests refused by a tenant limit, by tenant and limit.",
            ("tenant_name", "limit"), registry=registry,
        )
        self._remaining = Gauge(
            "gateway_rate_limit_remaining", "Budget a limited tenant has left in the current window.",
            ("tenant_name", "limit"), registry=registry,
        )
        self._remaining_of: dict[str, tuple[Gauge, Gauge]] = {}
        self._failures = Counter(
            "gateway_rate_limit_store_failures", "Failed exchanges with the shared rate-limit store, by reason.",
            ("reason",), registry=registry,
        )
        self._shared = Gauge(
            "gateway_rate_limit_store_shared",
            "1 while tenant budgets are shared through the store, 0 while it is unavailable",
            registry=registry,
        )
        self._shared.set(1)
        self._quota = Gauge(
            "gateway_quota_used_ratio",
            "Share of a tenant's token quota reserved or used in the current UTC day / month (1 = used up).",
            ("tenant_name", "period"), registry=registry,
        )

    def quota_used(self, tenant: str, period: str, ratio: float) -> None:
        self._quota.labels(self._label(tenant), period).set(ratio)

    def refused(self, tenant: str, limit: str) -> None:
        self._refused.labels(self._label(tenant), limit).inc()

    def remaining(self, tenant: str, budget: Budget) -> None:
        label = self._label(tenant)
        children = self._remaining_of.get(label)
        if children is None:  # one pair per series (the label folds unknown tenants)
            children = self._remaining_of[label] = (self._remaining.labels(label, "tokens"),
                                                     self._remaining.labels(label, "requests"))
        if budget.remaining_tokens is not None:
            children[0].set(max(0, budget.remaining_tokens))
        if budget.remaining_requests is not None:
            children[1].set(max(0, budget.remaining_requests))

    def store_failed(self, reason: str) -> None:
        self._failures.labels(reason).inc()

    def store_shared(self, shared: bool) -> None:
        self._shared.set(1 if shared else 0)
