"""The router through its seams: an in-memory state store and a hand-driven clock."""

from __future__ import annotations

from core._routing import Router
from core.state import MemoryStateStore


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _router(clock: Clock, mappings: dict[str, str] | None = None) -> Router:
    return Router(("alpha", "beta", "gamma"), mappings or {}, MemoryStateStore(), clock=clock)


async def test_a_mapped_tenant_always_gets_its_own_instance() -> None:
    router = _router(Clock(), {"contoso": "beta"})
    assert [await router.candidates("contoso") for _ in range(3)] == [("beta",)] * 3


async def test_unmapped_tenants_rotate_over_every_instance_with_the_rest_as_failover() -> None:
    router = _router(Clock())
    picks = [await router.candidates("acme") for _ in range(4)]
    assert picks == [
        ("alpha", "beta", "gamma"),
        ("beta", "gamma", "alpha"),
        ("gamma", "alpha", "beta"),
        ("alpha", "beta", "gamma"),
    ]


async def test_a_cooling_instance_is_skipped_until_its_time_is_up() -> None:
    clock = Clock()
    router = _router(clock)
    router.cool_down("alpha", 5.0)
    firsts = {(await router.candidates("acme"))[0] for _ in range(6)}
    assert firsts == {"beta", "gamma"}
    assert all(["alpha" not in await router.candidates("acme") for _ in range(3)])
    clock.now += 5.0
    firsts = {(await router.candidates("acme"))[0] for _ in range(6)}
    assert firsts == {"alpha", "beta", "gamma"}


async def test_when_every_instance_cools_all_are_still_tried() -> None:
    router = _router(Clock())
    for name in ("alpha", "beta", "gamma"):
        router.cool_down(name, 30.0)
    assert sorted(await router.candidates("acme")) == ["alpha", "beta", "gamma"]


async def test_a_shorter_cool_down_does_not_cut_a_longer_one() -> None:
    clock = Clock()
    router = _router(clock)
    router.cool_down("alpha", 10.0)
    router.cool_down("alpha", 1.0)
    clock.now += 2.0
    assert all(["alpha" not in await router.candidates("acme") for _ in range(3)])


async def test_among_narrows_the_choice_and_keeps_the_mapping_when_it_serves() -> None:
    router = _router(Clock(), {"contoso": "beta"})
    assert await router.candidates("contoso", among={"beta", "gamma"}) == ("beta",)
    # the tenant's own instance does not serve it: round-robin over those that do
    picks = {await router.candidates("contoso", among={"alpha", "gamma"}) for _ in range(2)}
    assert picks == {("alpha", "gamma"), ("gamma", "alpha")}
    assert await router.candidates("acme", among=set()) == ()
