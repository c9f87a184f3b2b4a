"""The shared store's health as one replica sees it: open after a failure, probed again later.

While open, the limiter does not call the shared store (``Limits:OnStoreFailure`` decides what
limited tenants get meanwhile). Each failure is counted; one WARNING a minute says what is
happening, with the number of similar messages held back.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("core.limits")

_LOG_EVERY_SECONDS = 60.0


class StoreHealthMetrics(Protocol):
    def store_failed(self, reason: str) -> None: ...

    def store_shared(self, shared: bool) -> None: ...


class StoreCircuit:
    def __init__(
        self, metrics: StoreHealthMetrics, *, mode: str, probe_interval_seconds: float, clock: Callable[[], float]
    ) -> None:
        self._metrics = metrics
        self._mode = mode
        self._probe_interval = probe_interval_seconds
        self._clock = clock
        self._failure: str | None = None
        self.probe_at = 0.0
        self._warned_at = -math.inf
        self._held_back = 0

    @property
    def open(self) -> bool:
        """True while the shared store is not to be called (until the next probe)."""
        return self._failure is not None and self._clock() < self.probe_at

    def failed(self, reason: str, detail: str) -> None:
        self._failure = reason
        self.probe_at = self._clock() + self._probe_interval
        self._metrics.store_failed(reason)
        self._metrics.store_shared(False)
        now = time.monotonic()
        if now - self._warned_at < _LOG_EVERY_SECONDS:
            self._held_back += 1
            return
        self._warned_at = now
        log.warning(
            "rate-limit store unavailable (%s: %s); %s (Limits:OnStoreFailure), retrying every %.0f s "
            "(%d similar messages suppressed)", reason, detail, self._mode, self._probe_interval, self._held_back,
        )  # fmt: skip
        self._held_back = 0

    def recovered(self) -> None:
        if self._failure is None:
            return
        self._failure = None
        self._metrics.store_shared(True)
        log.info("rate-limit store available again; budgets are shared across replicas")
