"""RemoteWritePusher against a real HTTP receiver on 127.0.0.1 that decodes what it gets.

The receiver here is a small aiohttp app that answers like a remote-write endpoint and keeps
every request, so the tests can read headers and the decoded WriteRequest. The end-to-end
tests against a real Prometheus are in tests/observability/.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from core import ConfigurationError, load_settings
from core.config import RemoteWriteSettings
from core.telemetry._remote_series import SeriesEncoder, decompress, default_instance, snapshot
from core.telemetry._remote_write import MONITOR_SCOPE, RemoteWritePusher, RetryPolicy

FAST = RetryPolicy(attempts=2, initial_backoff_seconds=0.01, max_backoff_seconds=0.02)


@dataclass
class Receiver:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then 204

    def series(self, index: int = -1) -> dict[str, tuple[dict[str, str], float, int]]:
        """The decoded request as {__name__ + sorted labels: (labels, value, timestamp)}."""
        request = decompress(self.requests[index][1])
        out = {}
        for ts in request.timeseries:
            labels = {label.name: label.value for label in ts.labels}
            key = ",".join(f"{k}={v}" for k, v in labels.items())
            out[key] = (labels, ts.samples[0].value, ts.samples[0].timestamp)
        return out


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = web.Application()
    state = Receiver(url="")

    async def write(request: web.Request) -> web.Response:
        state.requests.append((dict(request.headers), await request.read()))
        status = state.statuses.pop(0) if state.statuses else 204
        return web.Response(status=status, text="" if status < 300 else "out of order sample")

    app.router.add_post("/api/v1/write", write)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/api/v1/write"
    yield state
    await runner.cleanup()


def _settings(url: str, **extra: object) -> RemoteWriteSettings:
    return RemoteWriteSettings(enabled=True, url=url, job="gw", instance="host-a:1", **extra)


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    tokens = Counter("openai_total_tokens", "t", ("tenant_name",), registry=registry)
    tokens.labels("contoso").inc(120)
    tokens.labels("fabrikam").inc(7)
    Gauge("openai_total_tokens_processed", "g", ("tenant_name",), registry=registry).labels("contoso").set(60)
    latency = Histogram(
        "gateway_request_duration_seconds", "h", ("route",), buckets=(0.1, 1.0), registry=registry
    )
    latency.labels("/openai/chat").observe(0.5)
    return registry


async def test_push_sends_the_remote_write_wire_format(receiver: Receiver) -> None:
    pusher = RemoteWritePusher(_settings(receiver.url), _registry(), retry=FAST)
    assert await pusher.push_now() is True
    await pusher.aclose()

    headers, _ = receiver.requests[0]
    assert headers["Content-Encoding"] == "snappy"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert "Authorization" not in headers
    request = decompress(receiver.requests[0][1])
    for ts in request.timeseries:
        names = [label.name for label in ts.labels]
        assert names == sorted(names), "remote-write requires labels sorted by name"
        assert {"__name__", "job", "instance"} <= set(names)
    series = receiver.series(0)
    counter = series["__name__=openai_total_tokens_total,instance=host-a:1,job=gw,tenant_name=contoso"]
    assert counter[1] == 120
    assert "__name__=openai_total_tokens_processed,instance=host-a:1,job=gw,tenant_name=contoso" in series
    names = {labels["__name__"] for labels, _, _ in series.values()}
    assert {
        "gateway_request_duration_seconds_bucket",
        "gateway_request_duration_seconds_sum",
        "gateway_request_duration_seconds_count",
    } <= names
    assert not any(name.endswith("_created") for name in names)
    buckets = {labels["le"]: value for labels, value, _ in series.values() if "le" in labels}
    assert buckets == {"0.1": 0.0, "1.0": 1.0, "+Inf": 1.0}


async def test_pusher_counts_its_own_pushes_and_pushes_them_too(receiver: Receiver) -> None:
    registry = _registry()
    pusher = RemoteWritePusher(_settings(receiver.url), registry, retry=FAST)
    await pusher.push_now()
    await pusher.push_now()
    assert registry.get_sample_value("gateway_remote_write_pushes_total") == 2
    # The second request carries the count as it was before it was sent: one accepted push.
    assert receiver.series(1)["__name__=gateway_remote_write_pushes_total,instance=host-a:1,job=gw"][1] == 1
    await pusher.aclose()


async def test_receiver_error_counts_a_failure_and_the_next_push_delivers(receiver: Receiver) -> None:
    registry = _registry()
    pusher = RemoteWritePusher(_settings(receiver.url), registry, retry=FAST)
    receiver.statuses = [503, 503]  # both attempts of the first push fail
    assert await pusher.push_now() is False
    assert registry.get_sample_value("gateway_remote_write_failures_total", {"reason": "server"}) == 1
    registry_counter = receiver.series(-1)
    assert len(receiver.requests) == 2 and registry_counter  # retried once with the same data

    assert await pusher.push_now() is True
    assert registry.get_sample_value("gateway_remote_write_pushes_total") == 1
    await pusher.aclose()


async def test_rejected_data_is_not_retried(receiver: Receiver) -> None:
    registry = _registry()
    pusher = RemoteWritePusher(_settings(receiver.url), registry, retry=FAST)
    receiver.statuses = [400]
    assert await pusher.push_now() is False
    assert len(receiver.requests) == 1
    assert registry.get_sample_value("gateway_remote_write_failures_total", {"reason": "rejected"}) == 1
    await pusher.aclose()


async def test_unreachable_receiver_counts_connection_failures() -> None:
    registry = _registry()
    pusher = RemoteWritePusher(_settings("http://127.0.0.1:9/api/v1/write"), registry, retry=FAST)
    assert await pusher.push_now() is False
    assert registry.get_sample_value("gateway_remote_write_failures_total", {"reason": "connection"}) == 1
    for reason in ("timeout", "auth", "server", "rejected"):  # every reason exists from the start
        assert registry.get_sample_value("gateway_remote_write_failures_total", {"reason": reason}) == 0
    await pusher.aclose()


class StandInCredential:
    """Stands in for azure-identity: Entra is unreachable here. Records the scopes it is asked for."""

    def __init__(self, expires_in: float = 3600, fail: bool = False) -> None:
        self.scopes: list[tuple[str, ...]] = []
        self.expires_in = expires_in
        self.fail = fail
        self.closed = False

    async def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.scopes.append(scopes)
        if self.fail:
            raise ClientAuthenticationError("no identity endpoint")
        import time

        return AccessToken(f"token-{len(self.scopes)}", int(time.time() + self.expires_in))

    async def close(self) -> None:
        self.closed = True


async def test_entra_asks_for_the_monitor_scope_and_sends_a_bearer_token(receiver: Receiver) -> None:
    credential = StandInCredential()
    pusher = RemoteWritePusher(
        _settings(receiver.url, auth="entra"), _registry(), credential=credential, retry=FAST
    )  # type: ignore[arg-type]
    assert await pusher.push_now() and await pusher.push_now()
    await pusher.aclose()
    assert credential.scopes[0] == (MONITOR_SCOPE,) == ("https://monitor.azure.com/.default",)
    assert len(credential.scopes) == 1, "the token is cached until near expiry"
    assert [h["Authorization"] for h, _ in receiver.requests] == ["Bearer token-1"] * 3
    assert credential.closed is False, "a credential passed in belongs to the caller"


async def test_entra_token_near_expiry_is_renewed_and_401_fetches_a_new_one(receiver: Receiver) -> None:
    credential = StandInCredential(expires_in=60)  # inside the 5-minute refresh margin
    pusher = RemoteWritePusher(
        _settings(receiver.url, auth="entra"), _registry(), credential=credential, retry=FAST
    )  # type: ignore[arg-type]
    await pusher.push_now()
    credential.expires_in = 3600
    await pusher.push_now()
    receiver.statuses = [401]
    assert await pusher.push_now() is True
    auth = [h["Authorization"] for h, _ in receiver.requests]
    assert auth == ["Bearer token-1", "Bearer token-2", "Bearer token-2", "Bearer token-3"]
    await pusher.aclose()


async def test_entra_failure_is_counted_not_raised(receiver: Receiver) -> None:
    registry = _registry()
    pusher = RemoteWritePusher(
        _settings(receiver.url, auth="entra"), registry, credential=StandInCredential(fail=True), retry=FAST
    )  # type: ignore[arg-type]
    assert await pusher.push_now() is False
    assert registry.get_sample_value("gateway_remote_write_failures_total", {"reason": "auth"}) == 1
    assert receiver.requests == []
    await pusher.aclose()


async def test_aclose_flushes_the_latest_values(receiver: Receiver) -> None:
    registry = CollectorRegistry()
    tokens = Counter("openai_total_tokens", "t", ("tenant_name",), registry=registry)
    pusher = RemoteWritePusher(_settings(receiver.url, interval_seconds=3600), registry, retry=FAST)
    await pusher.start()
    await pusher.start()  # idempotent
    tokens.labels("contoso").inc(42)
    await pusher.aclose()
    await pusher.aclose()  # idempotent
    assert len(receiver.requests) == 1
    key = "__name__=openai_total_tokens_total,instance=host-a:1,job=gw,tenant_name=contoso"
    assert receiver.series()[key][1] == 42
    assert await pusher.push_now() is False  # closed: nothing more is sent
    assert len(receiver.requests) == 1


async def test_final_flush_tries_once_so_shutdown_stays_quick(receiver: Receiver) -> None:
    registry = _registry()
    pusher = RemoteWritePusher(_settings(receiver.url), registry, retry=FAST)
    receiver.statuses = [503, 503]
    await pusher.aclose()
    assert len(receiver.requests) == 1
    assert registry.get_sample_value("gateway_remote_write_failures_total", {"reason": "server"}) == 1


async def test_interval_pushes_in_the_background(receiver: Receiver) -> None:
    import asyncio

    pusher = RemoteWritePusher(_settings(receiver.url, interval_seconds=0.05), _registry(), retry=FAST)
    await pusher.start()
    for _ in range(200):  # bounded wait for two background pushes
        if len(receiver.requests) >= 2:
            break
        await asyncio.sleep(0.02)
    await pusher.aclose()
    assert len(receiver.requests) >= 3  # two on the interval, one final flush


def test_empty_or_bad_url_fails_at_start_up_naming_the_key() -> None:
    for url in ("", "127.0.0.1:9090/api/v1/write", "ftp://x/y"):
        with pytest.raises(ConfigurationError) as info:
            RemoteWritePusher(RemoteWriteSettings(enabled=True, url=url), CollectorRegistry())
        assert info.value.key == "RemoteWrite:Url"


def test_instance_label_defaults() -> None:
    import os
    import socket

    assert default_instance({"WEBSITE_INSTANCE_ID": "abc123"}) == "abc123"
    assert default_instance({"WEBSITE_INSTANCE_ID": "abc", "FUNCTIONS_WORKER_PROCESS_COUNT": "4"}) == (
        f"abc:{os.getpid()}"
    )
    assert default_instance({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "POD_NAME": "gw-7d9f"}) == "gw-7d9f"
    assert default_instance({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "gw-1"}) == "gw-1"
    assert default_instance({}) == f"{socket.gethostname()}:{os.getpid()}"
    settings = RemoteWriteSettings(enabled=True, url="http://127.0.0.1:1/w", instance="")
    pusher = RemoteWritePusher(settings, CollectorRegistry(), environ={"WEBSITE_INSTANCE_ID": "fn-1"})
    assert pusher.instance == "fn-1"


def test_settings_keys_reach_the_pusher() -> None:
    settings = load_settings(
        environ={
            "RemoteWrite__Enabled": "true",
            "RemoteWrite__Url": "http://127.0.0.1:9090/api/v1/write",
            "RemoteWrite__Instance": "pod-x",
            "RemoteWrite__Auth": "none",
        }
    )
    pusher = RemoteWritePusher(settings.remote_write, CollectorRegistry())
    assert pusher.instance == "pod-x"


def test_existing_job_and_instance_labels_are_kept_as_exported() -> None:
    registry = CollectorRegistry()
    Gauge("up_like", "g", ("job", "instance"), registry=registry).labels("other", "x:1").set(1)
    snap = snapshot(registry, job="gw", instance="me", timestamp_ms=1000)
    (ts,) = decompress(snap.bodies[0]).timeseries
    labels = {label.name: label.value for label in ts.labels}
    assert labels == {
        "__name__": "up_like",
        "exported_instance": "x:1",
        "exported_job": "other",
        "instance": "me",
        "job": "gw",
    }
    assert ts.samples[0].timestamp == 1000


def test_large_registries_are_split_into_several_requests() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("g", "g", ("n",), registry=registry)
    for n in range(25):
        gauge.labels(str(n)).set(n)
    snap = snapshot(registry, job="gw", instance="me", timestamp_ms=1, max_series_per_request=10)
    assert snap.series == 25
    assert [len(decompress(b).timeseries) for b in snap.bodies] == [10, 10, 5]


def test_encoder_reuses_series_between_pushes_and_keeps_explicit_timestamps() -> None:
    from prometheus_client.metrics_core import GaugeMetricFamily

    registry = CollectorRegistry()
    counter = Counter("c", "c", ("tenant_name",), registry=registry)
    counter.labels("a").inc(1)

    class Stamped:
        def collect(self) -> list[GaugeMetricFamily]:
            family = GaugeMetricFamily("stamped", "s", labels=("k",))
            family.add_metric(("v",), 2.5, timestamp=1_700_000_000.25)
            return [family]

    registry.register(Stamped())
    encoder = SeriesEncoder(job="gw", instance="me")
    first = decompress(encoder.snapshot(registry, 1_700_000_001_000).bodies[0])
    counter.labels("a").inc(2)
    counter.labels("b").inc(5)
    second = decompress(encoder.snapshot(registry, 1_700_000_002_000).bodies[0])
    expected = {
        ("c_total", "a"): (3.0, 1_700_000_002_000),
        ("c_total", "b"): (5.0, 1_700_000_002_000),
        ("stamped", ""): (2.5, 1_700_000_000_250),
    }
    got = {}
    for ts in second.timeseries:
        labels = {label.name: label.value for label in ts.labels}
        got[(labels["__name__"], labels.get("tenant_name", ""))] = (ts.samples[0].value, ts.samples[0].timestamp)
        assert labels["job"] == "gw" and labels["instance"] == "me"
    assert got == expected
    assert len(first.timeseries) == 2
    # Old-style timestamps (0) and far-future ones use a different varint size: still decodable.
    assert decompress(encoder.snapshot(registry, 5).bodies[0]).timeseries[0].samples[0].timestamp == 5
