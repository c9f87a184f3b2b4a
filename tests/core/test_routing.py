"""The router through its seams: an in-memory state store and instance health on a hand-driven clock."""

from __future__ import annotations

from collections import Counter

from core._health import Health
from core._routing import Placement, Router, smooth_weighted
from core.config import CircuitBreakerSettings
from core.state import MemoryStateStore


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _router(clock: Clock, mappings: dict[str, str] | None = None,
            placements: dict[str, Placement] | None = None) -> tuple[Router, Health]:
    placements = placements or {n: Placement() for n in ("alpha", "beta", "gamma")}
    health = Health(placements, CircuitBreakerSettings(), clock=clock)
    return Router(placements, mappings or {}, MemoryStateStore(), health), health


async def test_a_mapped_tenant_always_gets_its_own_instance() -> None:
    router, _ = _router(Clock(), {"contoso": "beta"})
    assert [await router.candidates("contoso") for _ in range(3)] == [("beta",)] * 3


async def test_a_mapped_tenant_gets_no_candidate_while_its_instance_is_out() -> None:
    router, health = _router(Clock(), {"contoso": "beta"})
    health.cool_down("beta", 1)
    assert await router.candidates("contoso") == ()  # the failover loop waits or answers 429


async def test_unmapped_tenants_rotate_over_every_instance_with_the_rest_as_failover() -> None:
    router, _ = _router(Clock())
    picks = [await router.candidates("acme") for _ in range(4)]
    assert picks == [
        ("alpha", "beta", "gamma"),
        ("beta", "gamma", "alpha"),
        ("gamma", "alpha", "beta"),
        ("alpha", "beta", "gamma"),
    ]


async def test_a_cooling_instance_is_skipped_until_its_time_is_up() -> None:
    clock = Clock()
    router, health = _router(clock)
    health.cool_down("alpha", 5.0)
    firsts = {(await router.candidates("acme"))[0] for _ in range(6)}
    assert firsts == {"beta", "gamma"}
    assert all(["alpha" not in await router.candidates("acme") for _ in range(3)])
    clock.now += 5.0
    firsts = {(await router.candidates("acme"))[0] for _ in range(6)}
    assert firsts == {"alpha", "beta", "gamma"}


async def test_when_every_instance_is_out_there_is_no_candidate() -> None:
    router, health = _router(Clock())
    for name in ("alpha", "beta", "gamma"):
        health.cool_down(name, 30.0)
    assert await router.candidates("acme") == ()  # answered at once with 429 + Retry-After


async def test_a_shorter_cool_down_does_not_cut_a_longer_one() -> None:
    clock = Clock()
    router, health = _router(clock)
    health.cool_down("alpha", 10.0)
    health.cool_down("alpha", 1.0)
    clock.now += 2.0
    assert all(["alpha" not in await router.candidates("acme") for _ in range(3)])


def test_smooth_weighted_round_robin_spreads_the_heavier_instance() -> None:
    assert smooth_weighted([("a", 3), ("b", 1)]) == ("a", "a", "b", "a")
    assert Counter(smooth_weighted([("a", 5), ("b", 2), ("c", 1)])) == Counter(a=5, b=2, c=1)


async def test_weights_share_requests_inside_the_highest_priority_group() -> None:
    clock = Clock()
    placements = {"ptu": Placement(1, 1), "payg1": Placement(2, 3), "payg2": Placement(2, 1)}
    router, health = _router(clock, placements=placements)
    firsts = Counter([(await router.candidates("t"))[0] for _ in range(40)])
    assert firsts == Counter(ptu=40)
    assert await router.candidates("t") == ("ptu", "payg1", "payg2")  # failover order: then group 2
    health.cool_down("ptu", 5)
    firsts = Counter([(await router.candidates("t"))[0] for _ in range(40)])
    assert firsts == Counter(payg1=30, payg2=10)
    clock.now += 5
    assert (await router.candidates("t"))[0] == "ptu"


async def test_among_narrows_the_choice_and_keeps_the_mapping_when_it_serves() -> None:
    router, _ = _router(Clock(), {"contoso": "beta"})
    assert await router.candidates("contoso", among={"beta", "gamma"}) == ("beta",)
    # the tenant's own instance does not serve it: round-robin over those that do
    picks = {await router.candidates("contoso", among={"alpha", "gamma"}) for _ in range(2)}
    assert picks == {("alpha", "gamma"), ("gamma", "alpha")}
    assert await router.candidates("acme", among=set()) == ()
