"""Instance health: cool-downs, circuit breakers and misconfiguration, on a monotonic clock.

Three things take an instance out of rotation, each for a bounded time:

    cooling        it answered 429 (or 503 with Retry-After): until the time it asked for
    open           ``CircuitBreaker:Failures`` 5xx / timeouts / connection errors within
                   ``WindowSeconds``: for ``OpenSeconds``; then half-open, one probe at a time
                   (success closes it, failure opens it again)
    misconfigured  the gateway's own settings are wrong for it (401/403, 404 deployment, no Entra
                   token): for ``Gateway:MisconfiguredSeconds``

Everything here is plain state without I/O; the gateway reports outcomes, the router asks
``available``, and :mod:`core._health_sync` shares the deadlines between replicas.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from .config import CircuitBreakerSettings

State = Literal["closed", "open", "half-open", "cooling", "misconfigured"]
STATES: tuple[State, ...] = ("closed", "open", "half-open", "cooling", "misconfigured")


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Until when (monotonic seconds) an instance is cooling, open or misconfigured; 0 = not."""

    cooling: float = 0.0
    open: float = 0.0
    misconfigured: float = 0.0


@dataclass(slots=True)
class _Instance:
    failures: deque[float] = field(default_factory=deque)
    cooling_until: float = 0.0
    open_until: float = 0.0
    half_open: bool = False
    probing: bool = False
    misconfigured_until: float = 0.0
    misconfigured_detail: str = ""


class Health:
    """Per-instance health of one process (shared with other replicas by ``_health_sync``)."""

    def __init__(
        self,
        names: Iterable[str],
        breaker: CircuitBreakerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._breaker = breaker
        self._clock = clock
        self._instances = {name: _Instance() for name in names}
        self.on_change: Callable[[], None] = _nothing  # called when a deadline moves later

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._instances)

    def state(self, name: str) -> State:
        item = self._instances[name]
        now = self._clock()
        if item.misconfigured_until > now:
            return "misconfigured"
        if item.open_until > now:
            return "open"
        if item.cooling_until > now:
            return "cooling"
        return "half-open" if item.half_open else "closed"

    def available(self, name: str) -> bool:
        """May a request be sent to it now (for a half-open circuit: is the probe slot free)?"""
        state = self.state(name)
        return state == "closed" or (state == "half-open" and not self._instances[name].probing)

    def begin(self, name: str) -> bool:
        """Claim the instance for one call; False when it became unavailable meanwhile."""
        if not self.available(name):
            return False
        item = self._instances[name]
        if item.half_open:
            item.probing = True
        return True

    def end(self, name: str) -> None:
        """The call is over, whatever its outcome (frees a half-open circuit's probe slot)."""
        self._instances[name].probing = False

    def succeeded(self, name: str) -> None:
        item = self._instances[name]
        item.failures.clear()
        item.half_open = False
        item.open_until = 0.0

    def failed(self, name: str) -> bool:
        """A 5xx, timeout or connection error; True when this opened the circuit."""
        item = self._instances[name]
        now = self._clock()
        window = self._breaker.window_seconds
        item.failures.append(now)
        while item.failures and item.failures[0] <= now - window:
            item.failures.popleft()
        if item.half_open or len(item.failures) >= self._breaker.failures:
            item.open_until = now + self._breaker.open_seconds
            item.half_open = True  # once open time is up: one probe decides
            item.failures.clear()
            self.on_change()
            return True
        return False

    def cool_down(self, name: str, seconds: float) -> None:
        item = self._instances[name]
        item.cooling_until = max(item.cooling_until, self._clock() + max(0.0, seconds))
        self.on_change()

    def misconfigure(self, name: str, seconds: float, detail: str) -> None:
        item = self._instances[name]
        item.misconfigured_until = max(item.misconfigured_until, self._clock() + seconds)
        item.misconfigured_detail = detail
        self.on_change()

    def misconfigured_detail(self, name: str) -> str:
        """What is wrong with a misconfigured instance ('' when it is not)."""
        return self._instances[name].misconfigured_detail if self.state(name) == "misconfigured" else ""

    def recovery_in(self, name: str) -> float:
        """Seconds until the instance takes requests again (0 = now; a busy probe counts as 0)."""
        item = self._instances[name]
        until = max(item.cooling_until, item.open_until, item.misconfigured_until)
        return max(0.0, until - self._clock())

    def deadlines(self, name: str) -> Deadlines:
        item = self._instances[name]
        return Deadlines(item.cooling_until, item.open_until, item.misconfigured_until)

    def merge(self, name: str, learned: Deadlines, detail: str = "") -> None:
        """Adopt deadlines another replica learned (later deadlines win)."""
        item = self._instances.get(name)
        if item is None:
            return
        item.cooling_until = max(item.cooling_until, learned.cooling)
        if learned.open > item.open_until:
            item.open_until = learned.open
            item.half_open = True
        if learned.misconfigured > item.misconfigured_until:
            item.misconfigured_until = learned.misconfigured
            item.misconfigured_detail = detail or item.misconfigured_detail


def _nothing() -> None:
    return None
