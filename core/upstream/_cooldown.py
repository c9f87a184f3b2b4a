"""How long an instance asked to be left alone, from every header form Azure OpenAI (and APIM,
and the OpenAI API) uses on a 429 or 503:

    retry-after-ms                     milliseconds (Azure OpenAI)
    Retry-After                        seconds, or an HTTP date (RFC 9110)
    x-ratelimit-reset-requests/-tokens seconds ("5"), or a duration ("1m30s", "250ms"; OpenAI)

The first form present wins, in that order; None when none is readable (the gateway then uses
``Gateway:UnhealthyCooldownSeconds``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def cooldown_seconds(
    header: Callable[[str], str | None], *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds to wait according to the response headers (``header(name)`` reads one)."""
    value = header("retry-after-ms")
    if value is not None and (ms := _number(value)) is not None:
        return ms / 1000
    value = header("retry-after")
    if value is not None:
        seconds = _number(value)
        if seconds is None:
            seconds = _http_date(value, now())
        if seconds is not None:
            return seconds
    resets = [
        seconds
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if (value := header(name)) is not None and (seconds := _duration(value)) is not None
    ]
    return max(resets) if resets else None


def _number(value: str) -> float | None:
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return max(0.0, number) if number == number and number != float("inf") else None


def _http_date(value: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _duration(value: str) -> float | None:
    """``"5"``, ``"1.5"`` (seconds) or ``"1m30s"``, ``"250ms"``, ``"2h"``."""
    text = value.strip().lower()
    plain = _number(text)
    if plain is not None:
        return plain
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
