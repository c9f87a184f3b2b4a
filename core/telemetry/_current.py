"""The current OpenTelemetry context, read and set on the runtime context's ``ContextVar`` itself
when it is the API's default one (``contextvars``).

``opentelemetry.context``'s ``get_current``, ``attach`` and ``detach`` are two Python calls each
over that variable, and ``trace.set_span_in_context`` three more: together ~2 µs of the serving
event loop's time a traced request (the request span and each attempt's span are made current,
the attempt reads its parent, the upstream call reads its traceparent). Here they are the
variable's own methods. Any other runtime context (``OTEL_PYTHON_CONTEXT``): the API's functions.
tests/core/telemetry/test_w3c.py holds them to the API's results.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import Token

from opentelemetry import context as _api
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace import Span
from opentelemetry.trace.propagation import _SPAN_KEY

log = logging.getLogger("core.telemetry")
_runtime = getattr(_api, "_RUNTIME_CONTEXT", None)

get_current: Callable[[], Context]
attach: Callable[[Context], Token[Context]]
detach: Callable[[Token[Context]], None]

if type(_runtime) is ContextVarsRuntimeContext:
    _variable = _runtime._current_context
    get_current = _variable.get
    attach = _variable.set

    def detach(token: Token[Context]) -> None:
        try:
            _variable.reset(token)
        except (ValueError, RuntimeError) as exc:  # a token of another context, or used twice: as the API, logged
            log.warning("could not restore the OpenTelemetry context: %s", exc)

    direct = True
else:
    get_current, attach, detach = _api.get_current, _api.attach, _api.detach
    direct = False


def with_span(span: Span, parent: Context | None = None) -> Context:
    """``trace.set_span_in_context(span, parent)``: ``parent`` (the current context when None) with
    ``span`` as its span."""
    return Context({**(get_current() if parent is None else parent), _SPAN_KEY: span})
