"""Ledger values: one row per tenant x instance x deployment x hour x writer, and their sums.

Each gateway process is one *writer* and owns its rows: it writes a row's cumulative totals, never
a delta, so writing the same row again (a retried flush, a flush after a timeout whose write did
land) cannot count anything twice. Readers add up the writers' rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

GroupBy = Literal["hour", "day"]


def hour_of(moment: datetime) -> datetime:
    """The UTC hour ``moment`` falls in."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True, order=True)
class LedgerKey:
    tenant: str
    hour: datetime  # UTC, on the hour
    instance: str
    deployment: str
    writer: str


@dataclass(frozen=True, slots=True)
class Counts:
    """What a row adds up. ``reported_tokens`` came from Azure's usage, ``counted_tokens`` from tiktoken."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reported_tokens: int = 0
    counted_tokens: int = 0
    cost: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.requests + other.requests,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.reported_tokens + other.reported_tokens,
            self.counted_tokens + other.counted_tokens,
            round(self.cost + other.cost, 9),
        )


@dataclass(frozen=True, slots=True)
class LedgerRow:
    key: LedgerKey
    counts: Counts


@dataclass(frozen=True, slots=True)
class UsageLine:
    """One line of a usage report: a tenant's use of one deployment on one instance in one period."""

    tenant: str
    period: datetime
    instance: str
    deployment: str
    counts: Counts = field(default_factory=Counts)

    def as_dict(self) -> dict[str, object]:
        c = self.counts
        return {
            "tenant": self.tenant, "period": self.period.isoformat().replace("+00:00", "Z"),
            "instance": self.instance, "deployment": self.deployment, "requests": c.requests,
            "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "total_tokens": c.total_tokens, "reported_tokens": c.reported_tokens,
            "counted_tokens": c.counted_tokens, "cost": round(c.cost, 6),
        }


COLUMNS = ("tenant", "period", "instance", "deployment", "requests", "prompt_tokens", "completion_tokens",
           "total_tokens", "reported_tokens", "counted_tokens", "cost")


def summarise(rows: Iterable[LedgerRow], group_by: GroupBy) -> list[UsageLine]:
    """Add up the writers' rows per tenant, period, instance and deployment, sorted."""
    sums: dict[tuple[str, datetime, str, str], Counts] = {}
    for row in rows:
        period = row.key.hour if group_by == "hour" else row.key.hour.replace(hour=0)
        key = (row.key.tenant, period, row.key.instance, row.key.deployment)
        sums[key] = sums.get(key, Counts()) + row.counts
    return [UsageLine(t, p, i, d, c) for (t, p, i, d), c in sorted(sums.items())]


def in_range(hour: datetime, start: datetime, end: datetime) -> bool:
    """True when the hour starting at ``hour`` overlaps ``[start, end)``."""
    return hour < end and hour + timedelta(hours=1) > start


def with_counts(row: LedgerRow, counts: Counts) -> LedgerRow:
    return replace(row, counts=counts)
