"""The traffic generator's report: per-tenant figures as a rich table or a JSON document."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from rich.table import Table

from clients.cli._traffic import Outcome

TOTAL = "TOTAL"


@dataclass
class Figures:
    """What happened for one tenant (or all of them)."""

    name: str
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    with_usage: int = 0
    latencies: list[float] = field(default_factory=list)
    instances: Counter[str] = field(default_factory=Counter)
    unexpected: int = 0

    def add(self, outcome: Outcome, expected: frozenset[str]) -> None:
        self.requests += 1
        self.statuses[outcome.status] += 1
        self.kinds[outcome.kind] += 1
        if not outcome.ok and outcome.status not in expected:
            self.unexpected += 1
        if not outcome.ok:
            return
        self.latencies.append(outcome.latency_s)
        self.instances[outcome.instance or "n/a"] += 1
        if outcome.usage.known:
            self.with_usage += 1
            self.prompt_tokens += outcome.usage.prompt_tokens or 0
            self.completion_tokens += outcome.usage.completion_tokens or 0

    def percentile_ms(self, pct: float) -> float | None:
        """Nearest-rank percentile of successful requests' latency, in milliseconds."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        rank = max(1, math.ceil(pct / 100 * len(ordered)))
        return round(ordered[rank - 1] * 1000, 1)

    def tokens(self) -> tuple[int | None, int | None]:
        if not self.with_usage:
            return None, None
        return self.prompt_tokens, self.completion_tokens

    def as_json(self) -> dict[str, object]:
        prompt, completion = self.tokens()
        return {
            "requests": self.requests,
            "statuses": dict(sorted(self.statuses.items())),
            "kinds": dict(sorted(self.kinds.items())),
            "unexpected_failures": self.unexpected,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": None if prompt is None or completion is None else prompt + completion,
            "requests_with_usage": self.with_usage,
            "latency_ms": {"p50": self.percentile_ms(50), "p95": self.percentile_ms(95)},
            "instances": dict(sorted(self.instances.items())),
        }


@dataclass(frozen=True)
class Summary:
    transport: str
    duration_s: float
    tenants: list[Figures]
    total: Figures
    failures: list[str]

    @property
    def unexpected(self) -> int:
        return self.total.unexpected

    def as_json(self) -> dict[str, object]:
        return {
            "transport": self.transport,
            "duration_s": round(self.duration_s, 3),
            "requests": self.total.requests,
            "unexpected_failures": self.unexpected,
            "tenants": {f.name: f.as_json() for f in self.tenants},
            "totals": self.total.as_json(),
            "failures": self.failures,
        }


def summarize(
    outcomes: list[Outcome],
    expected: frozenset[str],
    transport: str,
    duration_s: float,
    max_failures: int = 10,
) -> Summary:
    per_tenant: dict[str, Figures] = {}
    total = Figures(TOTAL)
    failures: list[str] = []
    for outcome in outcomes:
        per_tenant.setdefault(outcome.tenant, Figures(outcome.tenant)).add(outcome, expected)
        total.add(outcome, expected)
        unexpected = not outcome.ok and outcome.status not in expected
        if unexpected and outcome.detail and len(failures) < max_failures:
            failures.append(f"{outcome.tenant} {outcome.kind}: {outcome.detail}")
    tenants = [per_tenant[name] for name in sorted(per_tenant)]
    return Summary(transport, duration_s, tenants, total, failures)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key}×{count}" for key, count in sorted(counter.items())) or "n/a"


def _num(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:g}" if isinstance(value, float) else str(value)


def render_table(summary: Summary) -> Table:
    total, seconds = summary.total.requests, summary.duration_s
    table = Table(title=f"Traffic over {summary.transport}: {total} requests in {seconds:.1f}s")
    for header, justify in (
        ("tenant", "left"),
        ("requests", "right"),
        ("statuses", "left"),
        ("prompt tok", "right"),
        ("completion tok", "right"),
        ("p50 ms", "right"),
        ("p95 ms", "right"),
        ("instances", "left"),
    ):
        table.add_column(header, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for figures in [*summary.tenants, summary.total]:
        prompt, completion = figures.tokens()
        table.add_row(
            figures.name,
            str(figures.requests),
            _counts(figures.statuses),
            _num(prompt),
            _num(completion),
            _num(figures.percentile_ms(50)),
            _num(figures.percentile_ms(95)),
            _counts(figures.instances),
            end_section=figures is summary.tenants[-1] if summary.tenants else False,
            style="bold" if figures is summary.total else None,
        )
    return table
