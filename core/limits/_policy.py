"""Policy values: a limit is an amount per window; a tenant has a token and a request limit.

Like ``limits.limits`` in alisaifee/limits: plain, frozen values with no algorithm and no storage.
Built from ``Limits:Tenants:<tenant>`` / ``Limits:Default`` (per minute) and ``Limits:WindowSeconds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``amount`` per ``window_seconds``, over any window of that length."""

    amount: int
    window_seconds: int

    @classmethod
    def per_minute(cls, per_minute: int, window_seconds: int) -> Limit | None:
        """``per_minute`` scaled to the window (``TokensPerMinute x WindowSeconds / 60``); 0 = none."""
        if per_minute <= 0:
            return None
        return cls(max(1, per_minute * window_seconds // 60), window_seconds)


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """The limits of one tenant; ``None`` = that dimension is unlimited."""

    tokens: Limit | None = None
    requests: Limit | None = None

    @property
    def limited(self) -> bool:
        return self.tokens is not None or self.requests is not None


UNLIMITED = TenantLimits()


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """Which limits apply to which tenant: its own entry, else the default."""

    tenants: Mapping[str, TenantLimits]
    default: TenantLimits
    window_seconds: int

    def of(self, tenant: str) -> TenantLimits:
        return self.tenants.get(tenant, self.default)

    @property
    def any_limited(self) -> bool:
        return self.default.limited or any(t.limited for t in self.tenants.values())
