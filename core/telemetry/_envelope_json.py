"""JSON forms of the export process: a batch of telemetry items as the exporter's client sends it
(made by orjson), an item made as its JSON text (:class:`RenderedItem`), an envelope's time and
duration as the exporter writes them.

The generated client's ``track`` serializes a list of items with
``json.dumps(body, cls=SdkJSONEncoder, exclude_readonly=True)``: the json module's Python
encoder calling ``SdkJSONEncoder.default`` for every model, which lists the model's read-only
fields each time (about a third of the export process's CPU). Given bytes, ``track`` posts them as
they are. :func:`encoded` makes those bytes with orjson: a model is its REST form minus its
read-only fields (found once per model class, as ``SdkJSONEncoder`` decides them); a
:class:`RenderedItem` is its text as it is; everything else as the json module writes it, and an
item orjson would write differently, or cannot write, the stock way. The same JSON value reaches
the ingestion endpoint (tests/core/telemetry/test_envelopes.py compares them); the text differs
only in spacing and in non-ASCII characters being UTF-8 rather
than ``\\u`` escapes.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable
from typing import Any

import orjson
from azure.monitor.opentelemetry.exporter._generated.exporter._utils.model_base import (
    SdkJSONEncoder,
    _is_readonly,
    _MyMutableMapping,
)
from azure.monitor.opentelemetry.exporter._generated.exporter.models import (
    MonitorBase,
    RemoteDependencyData,
    RequestData,
    TelemetryItem,
)

# datetimes, dataclasses and subclasses of str, int, float, dict, list to default() (orjson's own
# forms differ from the json module's: "+00:00", no conversion to UTC, dataclasses as objects)
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
_READONLY: dict[type, frozenset[str]] = {}  # model class -> the REST names of its read-only fields
_stock_default: Callable[[Any], Any] = SdkJSONEncoder(exclude_readonly=True).default


_new = object.__new__


def model(cls: Any, data: dict[str, Any]) -> Any:
    """A generated model over ``data`` (already in its REST form), without the generated
    constructor's per-field (de)serialization. (``Model.__new__``, the class's one-time setup, must
    have run once: see ``_envelopes.Envelopes``.)"""
    item = _new(cls)
    item._data = data
    return item


class RenderedItem(TelemetryItem):
    """A telemetry item made as its JSON text (``text``: what :func:`encoded` writes for it, the
    JSON value the stock encoder writes for the model) with the name of its data's type
    (``base_type``: what the customer SDK stats count), both set by its maker
    (``_envelopes.Envelopes.build``: ``object.__new__``, no constructor). Its model fields are read
    from that text the first time anything asks (offline storage, the exporter's retry bookkeeping,
    the tests), into the REST form the generated models keep: a batch sent at once never reads them."""

    text: bytes
    base_type: str

    @property
    def _data(self) -> dict[str, Any]:
        data: dict[str, Any] | None = self.__dict__.get("_fields")
        if data is None:
            data = self.__dict__["_fields"] = orjson.loads(self.text)
            base = data["data"]["baseData"]
            base["kind"] = self.base_type  # the discriminator (read-only: not sent, kept in offline storage)
            monitor = model(MonitorBase, {"baseData": model(_BASE_TYPES[self.base_type], base),
                                          "baseType": self.base_type})
            monitor._deserialized_baseType = True  # read as it is (customer SDK stats read it)
            data["data"] = monitor
        return data

    @_data.setter
    def _data(self, value: dict[str, Any]) -> None:
        self.__dict__["_fields"] = value


_BASE_TYPES = {cls.__name__: cls for cls in (RequestData, RemoteDependencyData)}  # what RenderedItems hold


def _default(value: Any) -> Any:
    """What the json module with ``SdkJSONEncoder`` writes for ``value``, in types orjson writes
    the same way (a TypeError: orjson gives up, the item goes the stock way)."""
    if type(value) is RenderedItem:
        return orjson.Fragment(value.text)
    readonly = _READONLY.get(type(value))
    if readonly is None:
        if not getattr(value, "_is_model", False):
            return _builtin(value)
        readonly = _readonly(value)
    data = value._data  # what its items() are
    if readonly:
        data = {key: item for key, item in data.items() if key not in readonly}
    tags = data.get("tags")  # the exporter's own envelopes' tags are keyed by ContextTagKeys (str enums)
    if type(tags) is dict and tags and type(next(iter(tags))) is not str:
        data = {**data, "tags": _str_keys(tags)}  # (other keys not str: orjson refuses them, the stock way)
    return data


def _str_keys(mapping: dict[Any, Any]) -> dict[Any, Any]:
    """``mapping`` with keys of str subclasses (str enums) as the json module writes them: their
    str value (any other key type is left for orjson to refuse)."""
    return {str.__str__(key) if isinstance(key, str) else key: item for key, item in mapping.items()}


def _readonly(model: Any) -> frozenset[str]:
    cls = type(model)
    if cls.items is not _MyMutableMapping.items:
        raise TypeError(f"{cls.__name__} has its own items()")  # not seen in the generated models: the stock way
    readonly = _READONLY[cls] = frozenset(
        field._rest_name for field in model._attr_to_rest_field.values() if _is_readonly(field))  # type: ignore[no-untyped-call]
    return readonly


def _builtin(value: Any) -> Any:
    # subclasses of the json module's own types: written from the base type's value, as it does
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, dict):
        return dict(value.items())
    if isinstance(value, (list, tuple)):
        return list(list.__iter__(value) if isinstance(value, list) else tuple.__iter__(value))
    return _stock_default(value)  # bytes, Decimal, datetimes... (or the stock TypeError)


def encoded(items: list[Any]) -> bytes | None:
    """``items`` as JSON, the value ``json.dumps(items, cls=SdkJSONEncoder, exclude_readonly=True)``
    writes: by orjson, except items orjson cannot write the same (NaN and infinities, which the
    json module writes as ``NaN``/``Infinity`` and orjson as null; integers beyond 64 bits; lone
    surrogates; keys other than str), which go the stock way. None when the stock way fails too:
    ``track`` then fails as it does."""
    try:
        content = orjson.dumps(items, default=_default, option=_OPTIONS)
    except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
        content = b"null"
    if b"null" not in content:  # a None, or a non-finite float the json module does not write as null
        return content
    parts = []
    for item in items:  # one at a time (slower: each its own bytes)
        if type(item) is RenderedItem:
            parts.append(item.text)
            continue
        try:
            part = orjson.dumps(item, default=_default, option=_OPTIONS)
        except (TypeError, ValueError):
            part = b"null"
        if b"null" in part:
            try:
                part = json.dumps(item, cls=SdkJSONEncoder, exclude_readonly=True).encode()
            except (TypeError, ValueError, RecursionError):
                return None
        parts.append(part)
    return b"[" + b",".join(parts) + b"]"


def fast_track(track: Callable[..., Any]) -> Callable[..., Any]:
    """The generated client's ``track``, with a list of items serialized by :func:`encoded`."""

    def fast(body: Any, **kwargs: Any) -> Any:
        if type(body) is list:
            content = encoded(body)
            if content is not None:
                return track(content, **kwargs)
        return track(body, **kwargs)

    return fast


_DIGITS = [f"{n:03d}" for n in range(1000)]
_SECONDS = [f"0.00:00:{n:02d}." for n in range(60)]


class Rfc3339:
    """``TelemetryItem.time`` of a span starting at ``nanoseconds`` (since the epoch) as the exporter
    writes it, ``datetime.fromtimestamp(nanoseconds / 1e9, UTC).isoformat()`` with "Z": the float
    of seconds split as CPython does (microseconds rounded half to even from the float's fraction,
    a fraction of 0 not written), the date and time of day made once per second."""

    def __init__(self) -> None:
        self._second = -1.0
        self._prefix = ""

    def __call__(self, nanoseconds: int) -> str:
        fraction, second = math.modf(nanoseconds / 1e9)
        micro = round(fraction * 1e6)
        if micro >= 1_000_000:
            second += 1.0
            micro -= 1_000_000
        elif micro < 0:
            second -= 1.0
            micro += 1_000_000
        if second != self._second:
            self._prefix = datetime.datetime.fromtimestamp(second, tz=datetime.UTC).isoformat()[:19]
            self._second = second
        if micro:
            return f"{self._prefix}.{_DIGITS[micro // 1000]}{_DIGITS[micro % 1000]}Z"
        return f"{self._prefix}Z"


def duration(nanoseconds: int) -> str:
    """The exporter's ``ns_to_duration`` (days.hh:mm:ss.fff, milliseconds rounded half up)."""
    milliseconds = (nanoseconds + 500_000) // 1_000_000
    if 0 <= milliseconds < 60_000:
        return _SECONDS[milliseconds // 1000] + _DIGITS[milliseconds % 1000]
    value, milliseconds = divmod(milliseconds, 1000)
    value, seconds = divmod(value, 60)
    value, minutes = divmod(value, 60)
    days, hours = divmod(value, 24)
    return f"{days:d}.{hours:02d}:{minutes:02d}:{seconds:02d}.{milliseconds:03d}"
