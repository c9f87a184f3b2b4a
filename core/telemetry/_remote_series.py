"""A prometheus-client registry as Prometheus remote-write requests (protobuf + raw snappy).

Each sample of ``registry.collect()`` becomes one ``TimeSeries`` whose labels are ``__name__``,
the sample's labels, ``job`` and ``instance``, sorted by name as the remote-write spec requires.
Histograms arrive as their ``_bucket`` (with ``le``), ``_sum`` and ``_count`` samples;
``_created`` samples are skipped (they are an OpenMetrics detail no dashboard queries).
A sample that already carries ``job`` or ``instance`` keeps it as ``exported_job`` /
``exported_instance``, the way a Prometheus scrape without ``honor_labels`` does.

Labels are encoded with the generated ``protos/remote_pb2`` classes once per series; each push
then only appends the new sample and the length-delimited framing (about half the CPU of
building a WriteRequest object per push: 18k series in ~0.1 s). Tests decode every body with
``remote_pb2``, so the bytes stay the message ``protos/remote.proto`` defines.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import cramjam
from prometheus_client import CollectorRegistry

from protos import remote_pb2

REMOTE_WRITE_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
_DOUBLE = struct.Struct("<d")
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


class SeriesEncoder:
    """Encodes a registry as WriteRequest bodies; reuses each series' label bytes across pushes.

    The labels of a series never change, only its sample does, so each series' encoded labels
    are kept (for the series seen in the last push) and a push only encodes the new samples and
    the length-delimited framing of ``WriteRequest.timeseries`` / ``TimeSeries.samples``.
    """

    def __init__(self, *, job: str, instance: str, max_series_per_request: int = 2000) -> None:
        self._target = (("job", job), ("instance", instance))
        self._max = max(1, max_series_per_request)
        self._stamp_size = 0
        # (sample name, labels) -> (encoded labels, bytes that precede the sample's value)
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[bytes, bytes]] = {}

    def snapshot(self, registry: CollectorRegistry, timestamp_ms: int) -> Snapshot:
        """Read the registry once and encode it as one or more compressed WriteRequest bodies."""
        stamp = _timestamp_field(timestamp_ms)
        cache: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[bytes, bytes]] = (
            self._series if len(stamp) == self._stamp_size else {}
        )
        seen: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[bytes, bytes]] = {}
        batches: list[list[bytes]] = [[]]
        for name, labels, value, sample_ms in _samples(registry):
            key = (name, tuple(labels.items()))
            cached = cache.get(key)
            if cached is None:
                cached = _series_head(_encode_labels(name, labels, self._target), len(stamp))
            seen[key] = cached
            parts = batches[-1]
            if len(parts) >= 3 * self._max:
                parts = []
                batches.append(parts)
            if sample_ms is None:
                parts += (cached[1], _DOUBLE.pack(value), stamp)
            else:
                own = _timestamp_field(sample_ms)
                parts += (_series_head(cached[0], len(own))[1], _DOUBLE.pack(value), own)
        self._series, self._stamp_size = seen, len(stamp)
        bodies = tuple(bytes(cramjam.snappy.compress_raw(b"".join(parts))) for parts in batches)
        return Snapshot(bodies, len(seen), timestamp_ms)


def snapshot(
    registry: CollectorRegistry, *, job: str, instance: str, timestamp_ms: int, max_series_per_request: int = 2000
) -> Snapshot:
    """One-off :meth:`SeriesEncoder.snapshot` (no label cache)."""
    encoder = SeriesEncoder(job=job, instance=instance, max_series_per_request=max_series_per_request)
    return encoder.snapshot(registry, timestamp_ms)


def compress(request: remote_pb2.WriteRequest) -> bytes:
    """Raw (block) snappy, not the framed format: receivers reject framed bodies."""
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def decompress(body: bytes) -> remote_pb2.WriteRequest:
    """The inverse of :func:`compress` (used by tests and local debugging)."""
    request = remote_pb2.WriteRequest()
    request.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
    return request


def _samples(registry: CollectorRegistry) -> Iterator[tuple[str, dict[str, str], float, int | None]]:
    for family in registry.collect():
        created = f"{family.name}_created" if family.type in _CREATED_KINDS else None
        for sample in family.samples:
            if sample.name == created:
                continue
            stamp = None if sample.timestamp is None else _to_ms(sample.timestamp)
            yield sample.name, sample.labels, float(sample.value), stamp


def _encode_labels(name: str, labels: dict[str, str], target: tuple[tuple[str, str], ...]) -> bytes:
    """The ``TimeSeries.labels`` field bytes: ``__name__``, labels, job, instance, sorted by name."""
    merged = {"__name__": name, **labels}
    for label, value in target:
        if label in merged:
            merged[f"exported_{label}"] = merged.pop(label)
        merged[label] = value
    pairs = sorted((k, v) for k, v in merged.items() if v != "")
    series = remote_pb2.TimeSeries(labels=[remote_pb2.Label(name=k, value=v) for k, v in pairs])
    return bytes(series.SerializeToString())


def _series_head(labels: bytes, stamp_size: int) -> tuple[bytes, bytes]:
    """``labels`` and every byte of ``WriteRequest.timeseries[i]`` before the sample's value.

    TimeSeries = labels (field 1, encoded) + samples (field 2: length, then Sample =
    value (field 1, fixed64 double: tag 0x09 + 8 bytes) + timestamp (field 2, varint)).
    """
    sample_size = 1 + 8 + stamp_size
    series_size = len(labels) + 1 + len(_varint(sample_size)) + sample_size
    head = b"\x0a" + _varint(series_size) + labels + b"\x12" + _varint(sample_size) + b"\x09"
    return labels, head


def _timestamp_field(timestamp_ms: int) -> bytes:
    return b"\x10" + _varint(timestamp_ms & 0xFFFFFFFFFFFFFFFF)  # int64 as protobuf encodes it


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _to_ms(timestamp: object) -> int:
    # prometheus-client gives float seconds, or a Timestamp with sec/nsec.
    if isinstance(timestamp, int | float):
        return int(timestamp * 1000)
    sec = getattr(timestamp, "sec", 0)
    nsec = getattr(timestamp, "nsec", 0)
    return int(sec) * 1000 + int(nsec) // 1_000_000


__all__ = [
    "REMOTE_WRITE_HEADERS", "SeriesEncoder", "Snapshot", "compress", "decompress", "default_instance", "snapshot",
]
