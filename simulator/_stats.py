"""Request and token counters of one simulated instance (``GET /_sim/stats``)."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TokenTotals:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def plus(self, prompt: int, completion: int) -> TokenTotals:
        return TokenTotals(
            self.prompt_tokens + prompt,
            self.completion_tokens + completion,
            self.total_tokens + prompt + completion,
        )


@dataclass(frozen=True, slots=True)
class DeploymentStats:
    """Counters of one deployment (or of the whole instance).

    ``generated``: usage of every completion fully sent to a client.
    ``reported``: the part of it that reached the client in a ``usage`` object (JSON responses,
    and streams that asked for ``stream_options.include_usage``).
    """

    requests: int = 0
    succeeded: int = 0
    throttled: int = 0
    faults: int = 0
    aborted: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    reported: TokenTotals = TokenTotals()
    generated: TokenTotals = TokenTotals()


@dataclass(frozen=True, slots=True)
class SimulatorStats(DeploymentStats):
    """Instance totals plus per-deployment counters; ``to_dict()`` is the JSON of ``/_sim/stats``."""

    name: str = ""
    deployments: dict[str, DeploymentStats] = field(default_factory=dict)
    # W3C ``traceparent`` headers of the last requests that carried one (newest last, at most 100).
    traceparents: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Counters:
    __slots__ = (
        "aborted",
        "faults",
        "generated",
        "reported",
        "requests",
        "status_counts",
        "succeeded",
        "throttled",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.succeeded = 0
        self.throttled = 0
        self.faults = 0
        self.aborted = 0
        self.status_counts: dict[str, int] = {}
        self.reported = TokenTotals()
        self.generated = TokenTotals()

    def freeze(self) -> DeploymentStats:
        return DeploymentStats(
            self.requests, self.succeeded, self.throttled, self.faults, self.aborted,
            dict(self.status_counts), self.reported, self.generated,
        )  # fmt: skip


TRACEPARENTS_KEPT = 100


class StatsRecorder:
    """Mutable counters owned by one server; read them through ``snapshot()``."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._total = _Counters()
        self._per: dict[str, _Counters] = {}
        self._traceparents: deque[str] = deque(maxlen=TRACEPARENTS_KEPT)

    def reset(self) -> None:
        self._total = _Counters()
        self._per = {}
        self._traceparents.clear()

    def _both(self, deployment: str | None) -> tuple[_Counters, ...]:
        if deployment is None:
            return (self._total,)
        per = self._per.get(deployment)
        if per is None:
            per = self._per[deployment] = _Counters()
        return self._total, per

    def request(self, deployment: str | None, traceparent: str | None = None) -> None:
        if traceparent:
            self._traceparents.append(traceparent[:128])
        for item in self._both(deployment):
            item.requests += 1

    def status(self, deployment: str | None, status: int) -> None:
        key = str(status)
        for item in self._both(deployment):
            item.status_counts[key] = item.status_counts.get(key, 0) + 1
            if status == 429:
                item.throttled += 1

    def fault(self, deployment: str | None) -> None:
        for item in self._both(deployment):
            item.faults += 1

    def aborted(self, deployment: str) -> None:
        for item in self._both(deployment):
            item.aborted += 1

    def usage(self, deployment: str, prompt: int, completion: int, reported: bool) -> None:
        for item in self._both(deployment):
            item.succeeded += 1
            item.generated = item.generated.plus(prompt, completion)
            if reported:
                item.reported = item.reported.plus(prompt, completion)

    def snapshot(self) -> SimulatorStats:
        total = self._total.freeze()
        return SimulatorStats(
            requests=total.requests,
            succeeded=total.succeeded,
            throttled=total.throttled,
            faults=total.faults,
            aborted=total.aborted,
            status_counts=total.status_counts,
            reported=total.reported,
            generated=total.generated,
            name=self._name,
            deployments={name: counters.freeze() for name, counters in self._per.items()},
            traceparents=list(self._traceparents),
        )
