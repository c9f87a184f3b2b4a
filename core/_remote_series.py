"""A prometheus-client registry as Prometheus remote-write requests (protobuf + raw snappy).

Each sample of ``registry.collect()`` becomes one ``TimeSeries`` whose labels are ``__name__``,
the sample's labels, ``job`` and ``instance``, sorted by name as the remote-write spec requires.
Histograms arrive as their ``_bucket`` (with ``le``), ``_sum`` and ``_count`` samples;
``_created`` samples are skipped (they are an OpenMetrics detail no dashboard queries).
A sample that already carries ``job`` or ``instance`` keeps it as ``exported_job`` /
``exported_instance``, the way a Prometheus scrape without ``honor_labels`` does.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import cramjam
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from protos import remote_pb2

REMOTE_WRITE_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
_CREATED_KINDS = frozenset({"counter", "histogram", "summary", "gaugehistogram"})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The registry at one instant, ready to send: one snappy body per batch of series."""

    bodies: tuple[bytes, ...]
    series: int
    timestamp_ms: int


def default_instance(environ: Mapping[str, str] | None = None) -> str:
    """A label value unique to this process, so counters from many instances never collide.

    Azure Functions: ``WEBSITE_INSTANCE_ID`` (plus ``:pid`` when the host runs several worker
    processes); Kubernetes: ``POD_NAME`` or ``HOSTNAME``; elsewhere ``<hostname>:<pid>``.
    """
    env = os.environ if environ is None else environ
    pid = os.getpid()
    site_instance = env.get("WEBSITE_INSTANCE_ID", "").strip()
    if site_instance:
        workers = env.get("FUNCTIONS_WORKER_PROCESS_COUNT", "1").strip()
        return site_instance if workers in ("", "1") else f"{site_instance}:{pid}"
    if env.get("KUBERNETES_SERVICE_HOST"):
        pod = env.get("POD_NAME", "").strip() or env.get("HOSTNAME", "").strip()
        if pod:
            return pod
    return f"{socket.gethostname()}:{pid}"


def snapshot(
    registry: CollectorRegistry,
    *,
    job: str,
    instance: str,
    timestamp_ms: int,
    max_series_per_request: int = 2000,
) -> Snapshot:
    """Read the registry once and encode it as one or more compressed WriteRequest bodies."""
    target = (("job", job), ("instance", instance))
    bodies: list[bytes] = []
    request = remote_pb2.WriteRequest()
    count = 0
    for labels, value, sample_ms in _samples(registry):
        series = request.timeseries.add()
        for name, label_value in _series_labels(labels, target):
            series.labels.add(name=name, value=label_value)
        series.samples.add(value=value, timestamp=sample_ms if sample_ms is not None else timestamp_ms)
        count += 1
        if len(request.timeseries) >= max_series_per_request:
            bodies.append(compress(request))
            request = remote_pb2.WriteRequest()
    if len(request.timeseries) or not bodies:
        bodies.append(compress(request))
    return Snapshot(tuple(bodies), count, timestamp_ms)


def compress(request: remote_pb2.WriteRequest) -> bytes:
    """Raw (block) snappy, not the framed format: receivers reject framed bodies."""
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def decompress(body: bytes) -> remote_pb2.WriteRequest:
    """The inverse of :func:`compress` (used by tests and local debugging)."""
    request = remote_pb2.WriteRequest()
    request.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
    return request


def _samples(registry: CollectorRegistry) -> Iterator[tuple[dict[str, str], float, int | None]]:
    for family in registry.collect():
        for sample in family.samples:
            if _is_created(family, sample.name):
                continue
            labels = {"__name__": sample.name, **sample.labels}
            stamp = None if sample.timestamp is None else _to_ms(sample.timestamp)
            yield labels, float(sample.value), stamp


def _is_created(family: Metric, sample_name: str) -> bool:
    return family.type in _CREATED_KINDS and sample_name == f"{family.name}_created"


def _series_labels(
    labels: dict[str, str], target: tuple[tuple[str, str], ...]
) -> list[tuple[str, str]]:
    merged = dict(labels)
    for name, value in target:
        if name in merged:
            merged[f"exported_{name}"] = merged.pop(name)
        merged[name] = value
    return sorted((k, v) for k, v in merged.items() if v != "")


def _to_ms(timestamp: object) -> int:
    # prometheus-client gives float seconds, or a Timestamp with sec/nsec.
    if isinstance(timestamp, int | float):
        return int(timestamp * 1000)
    sec = getattr(timestamp, "sec", 0)
    nsec = getattr(timestamp, "nsec", 0)
    return int(sec) * 1000 + int(nsec) // 1_000_000


__all__ = ["REMOTE_WRITE_HEADERS", "Snapshot", "compress", "decompress", "default_instance", "snapshot"]
