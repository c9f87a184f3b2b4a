"""Which instances serve a request, in order: the tenant's own, else priority groups and weights.

``AzureOpenAI:Services:<Name>:Priority`` groups instances (1 first: PTU before pay-as-you-go);
``Weight`` shares requests inside a group by smooth weighted round-robin (weights 3 and 1 give
A A B A, not A A A B). Only instances that :class:`Health` calls available are offered: the
first candidate comes from the highest group that has one, the rest follow for failover
(the same group first, then the lower groups).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
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

    def pinned(self, tenant: str, among: Collection[str] | None = None) -> str | None:
        """The instance the tenant is mapped to (``TenantAzureOpenAIMappings``), if any (and if it is
        ``among`` the instances that can serve the request, when that is narrowed)."""
        own = self._mappings.get(tenant)
        return own if own is not None and (among is None or own in among) else None

    def pool(self, tenant: str, among: Collection[str] | None = None) -> tuple[str, ...]:
        """Every instance that could serve the tenant, available now or not."""
        own = self.pinned(tenant, among)
        if own is not None:
            return (own,)
        return self._instances if among is None else tuple(n for n in self._instances if n in among)

    async def candidates(self, tenant: str, among: Collection[str] | None = None) -> tuple[str, ...]:
        """Available instances to try, in order: the first is the choice, the rest are failover.

        ``among`` (the compatible API: the instances serving a deployment) narrows the choice: the
        tenant's own instance when it is among them, else the groups' instances that are.
        """
        own = self.pinned(tenant, among)
        if own is not None:
            return (own,) if own in self._instances and self._health.available(own) else ()
        is_available = self._health.available
        available = {n for n in self._instances if (among is None or n in among) and is_available(n)}
        groups = [group for cycle in self._groups if (group := [n for n in cycle if n in available])]
        if not groups:
            return ()
        slot = await self._store.next_slot(POOL)
        first = groups[0]
        start = slot % len(first)
        if len(groups) == 1 and len(available) == len(first):  # one group, each name once: as it is
            return tuple(first[start:] + first[:start])
        ordered = dict.fromkeys(first[start:] + first[:start])  # in order, each name once
        for group in groups[1:]:
            ordered.update(dict.fromkeys(group))
        return tuple(ordered)
