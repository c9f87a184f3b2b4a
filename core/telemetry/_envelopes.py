"""Application Insights envelopes of the spans the gateway makes itself, built straight from the span
pipe's records (``_span_pipe.span_record``, ``PipeSpan.record``) in the export process.

The exporter's own conversion rebuilds a ``ReadableSpan`` and passes each field through the
generated models' (de)serializers: ~0.7 ms a span. :class:`Envelopes` writes the same items
directly as the JSON text the batch carries (``_envelope_json.RenderedItem``: the models' fields
read back from it only on the exporter's failure paths), for the spans whose shape it knows
(request spans of both hosts, GenAI attempt spans) and leaves every other span to the exporter.
Imported by ``_export_child.py`` (as its sibling when that runs as a script) and by the tests,
which compare both ways.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlparse

import orjson
from azure.monitor.opentelemetry.exporter._constants import (
    _GEN_AI_ATTRIBUTES,
    _INSTRUMENTATION_SUPPORTING_METRICS_LIST,
    _REMOTE_DEPENDENCY_ENVELOPE_NAME,
    _REQUEST_ENVELOPE_NAME,
    _SAMPLE_RATE_KEY,
)
from azure.monitor.opentelemetry.exporter._generated.exporter.models import (
    MonitorBase,
    RemoteDependencyData,
    RequestData,
    TelemetryItem,
)
from azure.monitor.opentelemetry.exporter._utils import (
    _is_status_code_success,
    _populate_part_a_fields,
    azure_monitor_context,
)
from azure.monitor.opentelemetry.exporter.export.trace._exporter import _is_standard_attribute
from azure.monitor.opentelemetry.exporter.export.trace._utils import (
    _get_target_for_dependency_from_peer,
    _get_url_for_http_request,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanKind, StatusCode

if __package__:  # imported as core.telemetry._envelopes
    from ._envelope_json import RenderedItem, Rfc3339, duration
else:  # the export process's sibling module (see _export_child.py)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _envelope_json import RenderedItem, Rfc3339, duration  # type: ignore[import-not-found,no-redef]

T = TypeVar("T")

_REQUEST_KEYS = frozenset({  # standard attributes of the hosts' SERVER spans (FastAPI's, grpc_host's)
    "http.request.method", "http.request.method_original", "url.scheme", "url.path", "url.query",
    "network.protocol.version", "server.address", "server.port", "http.route", "http.response.status_code",
    "error.type", "rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code", _SAMPLE_RATE_KEY})
_DEPENDENCY_KEYS = frozenset({  # standard attributes of core.telemetry.Tracing's GenAI attempt spans
    "server.address", "server.port", "peer.service", "error.type", _SAMPLE_RATE_KEY})
_SERVER, _CLIENT = SpanKind.SERVER.value, SpanKind.CLIENT.value
_OK_CODES = frozenset({StatusCode.UNSET.value, StatusCode.OK.value})
_UNPLANNED: Any = object()
_new = object.__new__
_OPERATION_TAGS = ("ai.operation.id", "ai.operation.parentId", "ai.operation.name")  # set per span


def _kept(cache: dict[Any, T], key: Any, make: Callable[..., T], *args: Any) -> T:
    """``make(*args)``, kept in ``cache`` under ``key`` (at most 1,024 kept, then all forgotten at
    once); made again each time when ``key`` holds an unhashable value (a sequence attribute)."""
    try:
        known: Any = cache.get(key, _UNPLANNED)
    except TypeError:
        return make(*args)
    if known is _UNPLANNED:
        if len(cache) >= 1024:
            cache.clear()
        known = cache[key] = make(*args)
    return known  # type: ignore[no-any-return]  # (typing.cast: a function call, on every span)


def _typed(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """A cache key of attribute values that tells apart equal values of other types (8000, 8000.0
    and True hash alike, and the exporter writes them differently)."""
    return (*values, *map(type, values))


class Envelopes:
    """Telemetry items of the spans the gateway makes, written directly as their JSON text (no
    ``ReadableSpan``, no generated models): REST and gRPC request spans and GenAI dependency spans with no
    events, no links and only the standard attributes listed above. :meth:`build` returns None for
    any other span: it goes through the exporter's own conversion. The items are the ones
    ``_convert_span_to_envelope`` makes (tests/core/telemetry/test_envelopes.py compares them).

    What depends only on a span's shape is worked out once and kept (each cache bounded, then
    cleared): which attributes go to ``properties`` for a set of attribute keys; the properties of
    a record's shared attributes (a request span's start attributes, an instance's attributes of an
    attempt span: one dict per chunk of records, see ``_span_pipe``); a request's name, url, result
    code and status class; a dependency's name, type and target (each keyed by the values it is
    made from and their types, kept as JSON text); the tags every item shares, as JSON text."""

    def __init__(self, resource: Resource, instrumentation_key: str | None) -> None:
        tags = {str(getattr(k, "value", k)): v for k, v in
                {**azure_monitor_context, **_populate_part_a_fields(resource)}.items()}
        members = orjson.dumps({k: v for k, v in tags.items() if k not in _OPERATION_TAGS}).decode()[1:-1]
        ikey = "" if instrumentation_key is None else f'"iKey":{orjson.dumps(instrumentation_key).decode()},'
        self._head = f'{ikey}"tags":{{{members}{"," if members else ""}'  # every item's, up to its operation tags
        self._plans: dict[tuple[Any, ...], tuple[tuple[str, int], ...] | None] = {}  # see _plan
        self._shared: dict[tuple[int, int], tuple[Any, dict[str, str] | None, bool]] = {}  # see _share
        self._scopes: dict[str, bool] = {}  # instrumentation scope name -> not one the exporter treats apart
        self._time = Rfc3339()
        self._requests: dict[tuple[Any, ...], tuple[str, str, bool] | None] = {}  # see _request
        self._dependencies: dict[tuple[Any, ...], tuple[str, str, bool] | None] = {}  # see _dependency
        for cls in (TelemetryItem, MonitorBase, RequestData, RemoteDependencyData):
            cls.__new__(cls)  # the generated class's one-time setup, which RenderedItem's model skips

    def build(self, record: tuple[Any, ...]) -> RenderedItem | None:
        (name, trace_id, span_id, _flags, _state, parent, kind, start, end, own, events, links,
         code, _description, scope, static) = record
        if events or links:
            return None
        if scope is not None:
            ours = self._scopes.get(scope[0])
            if ours is None:
                ours = self._scopes[scope[0]] = not (scope[0].startswith(("azure", "opentelemetry.instrumentation."))
                                                     or scope[0] in _INSTRUMENTATION_SUPPORTING_METRICS_LIST)
            if not ours:
                return None
        if static:
            shared = self._shared.get((id(static), kind))
            if shared is None or shared[0] is not static:
                shared = self._share(static, kind)
            _, properties, has_system = shared
            if properties is None:
                return None
            properties = properties.copy()
            attributes = {**static, **own}
        else:
            properties, has_system, attributes = {}, False, own
        plan = _kept(self._plans, (kind, has_system, *own), self._plan, kind, own, has_system)
        if plan is None:
            return None
        for key, limit in plan:
            value = own[key]
            if value is not None:
                properties[key] = str(value)[:limit]
            elif key in properties:  # the span's own None over a shared value: no property
                del properties[key]
        if kind == _SERVER:
            made = self._request(name, attributes)
            base_type, envelope_name = "RequestData", _REQUEST_ENVELOPE_NAME
        else:
            made = self._dependency(name, attributes)
            base_type, envelope_name = "RemoteDependencyData", _REMOTE_DEPENDENCY_ENVELOPE_NAME
        if made is None:
            return None
        operation, fields, status_ok = made
        sample = ""
        if _SAMPLE_RATE_KEY in attributes:
            rate = _json(attributes[_SAMPLE_RATE_KEY])
            if rate is None:
                return None
            sample = f',"sampleRate":{rate}'
        try:  # ids as f"{id:032x}" (and :016x) for ids in range, 3 times faster; beyond it: the exporter's way
            parent_tag = (f'"ai.operation.parentId":"{parent[0].to_bytes(8).hex()}",'
                          if parent is not None and parent[0] else "")
            ids = f'"ai.operation.id":"{trace_id.to_bytes(16).hex()}",{parent_tag}'
            span = span_id.to_bytes(8).hex()
            text = orjson.dumps(properties)  # values: str (a lone surrogate: TypeError)
        except (OverflowError, TypeError):
            return None
        item = _new(RenderedItem)
        item.base_type = base_type
        item.text = (  # the keys and values of the items the exporter makes, as encoded() writes them
            f'{{"name":"{envelope_name}","time":"{self._time(start or 0)}",{self._head}'
            f'{ids}"ai.operation.name":{operation}}},"data":{{"baseData":{{"ver":2,{fields},'
            f'"duration":"{duration(end - start if start and end else 0)}",'
            f'"success":{"true" if status_ok and code in _OK_CODES else "false"},"id":"{span}",'
            f'"properties":{text.decode()},"measurements":{{}}}},"baseType":"{base_type}"}}{sample}}}'
        ).encode()
        return item

    def _share(self, static: Mapping[str, Any], kind: int) -> tuple[Any, dict[str, str] | None, bool]:
        """For a record's shared attributes: (them, their properties or None when the span is left
        to the exporter, whether they name ``gen_ai.system``). Kept by the dict's identity while it
        is kept here (so no other dict can take its id), until 256 are kept."""
        if len(self._shared) >= 256:
            self._shared.clear()
        # (the kind's gen_ai.system check: on the span's keys, in build; the plan kept by keys, as the spans' own)
        plan = _kept(self._plans, (kind, True, *static), self._plan, kind, static, True)
        properties: dict[str, str] | None = None
        if plan is not None:
            properties = {}
            for key, limit in plan:
                value = static[key]
                if value is not None:
                    properties[key] = str(value)[:limit]
        shared = self._shared[(id(static), kind)] = (static, properties, "gen_ai.system" in static)
        return shared

    @staticmethod
    def _plan(kind: int, keys: Mapping[str, Any], has_system: bool = False) -> tuple[tuple[str, int], ...] | None:
        """The attributes going to ``properties`` of a span of this kind with these attribute keys
        (``has_system``: its shared attributes name ``gen_ai.system``), each with its value's length
        limit; None when the exporter's conversion decides: another kind, an Azure SDK span (typed
        and targeted by its namespace), a standard attribute not listed above (one the exporter may read)."""
        if kind == _SERVER:
            allowed = _REQUEST_KEYS
        elif kind == _CLIENT and (has_system or "gen_ai.system" in keys):
            allowed = _DEPENDENCY_KEYS
        else:
            return None
        if "az.namespace" in keys:
            return None
        plan = []
        for key in keys:
            if _is_standard_attribute(key):
                if key not in allowed:
                    return None
            elif key and len(key) <= 150:
                plan.append((key, 256 * 1024 if key in _GEN_AI_ATTRIBUTES else 8192))
        return tuple(plan)

    def _request(self, name: str, attributes: Mapping[str, Any]) -> tuple[str, str, bool] | None:
        """A request's ``ai.operation.name`` and fields as JSON, and whether its status is a success:
        they depend on the span's name and the attributes read below only (see ``_REQUEST_KEYS``):
        kept per those (while they are all hashable). None: not written the way the exporter does."""
        get = attributes.get
        key = _typed((name, get("http.request.method", _UNPLANNED), get("http.route", _UNPLANNED),
                      get("url.scheme", _UNPLANNED), get("url.path", _UNPLANNED), get("url.query", _UNPLANNED),
                      get("server.address", _UNPLANNED), get("server.port", _UNPLANNED),
                      get("http.response.status_code", _UNPLANNED)))
        return _kept(self._requests, key, self._request_fields, name, attributes)

    @staticmethod
    def _request_fields(name: str, attributes: Mapping[str, Any]) -> tuple[str, str, bool] | None:
        """(``ai.operation.name``, the request's name, result code and url, whether its status is
        a success) as the exporter's conversion makes them (the first two as JSON)."""
        operation = name
        fields: dict[str, Any] = {"name": name, "responseCode": "0"}
        status_ok = True
        if "http.request.method" in attributes:
            method = attributes["http.request.method"] or None  # as the exporter formats it
            url = _get_url_for_http_request(attributes)  # reads only url.* and server.* here (_REQUEST_KEYS)
            if "http.route" in attributes:
                operation = f"{method} {attributes['http.route']}"
            elif url:
                operation = f"{method} {urlparse(url).path or '/'}"
            status = attributes.get("http.response.status_code")
            try:
                status = int(status) if status else 0
            except ValueError:
                status = 0
            fields["responseCode"] = str(status)
            status_ok = _is_status_code_success(status, is_trace=True)
            if url:
                fields["url"] = url[:2048]
            elif url is not None:
                fields["url"] = url
        if operation:
            fields["name"] = operation[:1024]
        fields["responseCode"] = fields["responseCode"][:1024]
        return _pieces(operation, fields, status_ok)

    def _dependency(self, name: str, attributes: Mapping[str, Any]) -> tuple[str, str, bool] | None:
        """A GenAI dependency's ``ai.operation.name`` and fields as JSON: its name, type and target
        depend on the span's name, ``gen_ai.system`` and ``peer.service`` only (the other attributes
        the exporter's target reads are not in ``_DEPENDENCY_KEYS``): kept per those (while hashable)."""
        key = _typed((name, attributes["gen_ai.system"], attributes.get("peer.service", _UNPLANNED)))
        return _kept(self._dependencies, key, self._dependency_fields, name, attributes)

    @staticmethod
    def _dependency_fields(name: str, attributes: Mapping[str, Any]) -> tuple[str, str, bool] | None:
        """(``ai.operation.name``, the dependency's name, result code, type and target) as the
        exporter's conversion makes them for a GenAI span (as JSON)."""
        system = attributes["gen_ai.system"]
        fields: dict[str, Any] = {"name": name, "resultCode": "0"}
        target = _get_target_for_dependency_from_peer(attributes)
        if not target and system:
            target = system
        if name:
            fields["name"] = name[:1024]
        fields["type"] = f"GenAI | {system}"[:1024]
        if target:
            fields["target"] = str(target)[:1024]
        return _pieces(name, fields, True)


def _json(value: Any) -> str | None:
    """``value`` as JSON, when orjson writes it as the json module does (None: a non-finite float,
    an integer beyond 64 bits, a lone surrogate...)."""
    try:
        text = orjson.dumps(value)
    except TypeError:
        return None
    return None if text == b"null" and value is not None else text.decode()


def _pieces(operation: str, fields: dict[str, Any], status_ok: bool) -> tuple[str, str, bool] | None:
    """(``operation`` as JSON, ``fields`` as the members of a JSON object, ``status_ok``); None when
    either is not written by orjson as the json module writes it."""
    name, members = _json(operation), _json(fields)
    if name is None or members is None:
        return None
    return name, members[1:-1], status_ok
