"""Which instances serve a request, in order: the tenant's own, else priority groups and weights.

``AzureOpenAI:Services:<Name>:Priority`` groups instances (1 first: PTU before pay-as-you-go);
``Weight`` shares requests inside a group by smooth weighted round-robin (weights 3 and 1 give
A A B A, not A A A B). Only instances that :class:`Health` calls available are offered: the
first candidate comes from the highest group that has one, the rest follow for failover
(the same group first, then the lower groups).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._health import Health
from .state import StateStore

POOL = "default"


@dataclass(frozen=True, slots=True)
class Placement:
    priority: int = 1
    weight: int = 1


def smooth_weighted(weights: Sequence[tuple[str, int]]) -> tuple[str, ...]:
    """One cycle of nginx's smooth weighted round-robin: each name ``weight`` times, spread out."""
    total = sum(w for _, w in weights)
    current = {name: 0 for name, _ in weights}
    cycle: list[str] = []
    for _ in range(total):
        for name, weight in weights:
            current[name] += weight
        chosen = max(weights, key=lambda item: current[item[0]])[0]
        current[chosen] -= total
        cycle.append(chosen)
    return tuple(cycle)


class Router:
    def __init__(
        self,
        placements: Mapping[str, Placement],
        mappings: Mapping[str, str],
        store: StateStore,
        health: Health,
    ) -> None:
        self._mappings = dict(mappings)
        self._store = store
        self._health = health
        self._instances = tuple(placements)
        priorities = sorted({p.priority for p in placements.values()})
        self._groups = tuple(
            smooth_weighted([(n, p.weight) for n, p in placements.items() if p.priority == priority])
            for priority in priorities
        )

    @property
    def instances(self) -> tuple[str, ...]:
        return self._instances

    def pinned(self, tenant: str) -> str | None:
        """The instance the tenant is mapped to (``TenantAzureOpenAIMappings``), if any."""
        return self._mappings.get(tenant)

    def pool(self, tenant: str) -> tuple[str, ...]:
        """Every instance that could serve the tenant, available now or not."""
        own = self._mappings.get(tenant)
        return (own,) if own is not None else self._instances

    async def candidates(self, tenant: str) -> tuple[str, ...]:
        """Available instances to try, in order: the first is the choice, the rest are failover."""
        own = self._mappings.get(tenant)
        if own is not None:
            return (own,) if own in self._instances and self._health.available(own) else ()
        available = {n: self._health.available(n) for n in self._instances}  # once per instance
        groups = [[n for n in cycle if available[n]] for cycle in self._groups]
        groups = [g for g in groups if g]
        if not groups:
            return ()
        slot = await self._store.next_slot(POOL)
        first = groups[0]
        start = slot % len(first)
        ordered = dict.fromkeys(first[start:] + first[:start])  # in order, each name once
        for group in groups[1:]:
            ordered.update(dict.fromkeys(group))
        return tuple(ordered)
