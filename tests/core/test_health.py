"""Instance health with a fake clock: breaker threshold and window, half-open probe, cool-downs, merging."""

from __future__ import annotations

import pytest

from core._health import Deadlines, Health
from core.config import CircuitBreakerSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def health(clock: Clock, *names: str, failures: int = 5) -> Health:
    breaker = CircuitBreakerSettings(failures=failures, window_seconds=10, open_seconds=30)
    return Health(names or ("a", "b"), breaker, clock=clock)


def test_one_failure_never_opens_the_circuit_but_failures_within_the_window_do(clock):
    h = health(clock, failures=3)
    assert not h.failed("a") and not h.failed("a")
    assert h.state("a") == "closed" and h.available("a")
    clock.now += 11  # the first two fell out of the window
    assert not h.failed("a") and not h.failed("a")
    assert h.failed("a")
    assert h.state("a") == "open" and not h.available("a")
    assert h.recovery_in("a") == pytest.approx(30)


def test_half_open_lets_exactly_one_probe_through(clock):
    h = health(clock, failures=1)
    h.failed("a")
    clock.now += 30
    assert h.state("a") == "half-open"
    assert h.begin("a")
    assert not h.begin("a") and not h.available("a")  # a second request waits for the probe's answer
    h.end("a")
    h.failed("a")  # the probe failed: open again
    assert h.state("a") == "open"
    clock.now += 30
    assert h.begin("a")
    h.succeeded("a")
    h.end("a")
    assert h.state("a") == "closed" and h.begin("a") and h.begin("a")


def test_cooling_and_misconfigured_end_by_themselves(clock):
    h = health(clock)
    h.cool_down("a", 2)
    h.misconfigure("b", 60, "check ApiKey")
    assert (h.state("a"), h.state("b")) == ("cooling", "misconfigured")
    assert h.misconfigured_detail("b") == "check ApiKey"
    clock.now += 2
    assert h.state("a") == "closed"
    clock.now += 58
    assert h.state("b") == "closed" and h.misconfigured_detail("b") == ""


def test_deadlines_learned_from_another_replica_are_adopted_when_later(clock):
    h = health(clock)
    h.cool_down("a", 5)
    h.merge("a", Deadlines(cooling=clock.now + 2, open=clock.now + 20))
    assert h.state("a") == "open" and h.recovery_in("a") == pytest.approx(20)
    clock.now += 20
    assert h.state("a") == "half-open"
    h.merge("unknown", Deadlines(cooling=clock.now + 5))  # an instance this replica lacks: ignored
