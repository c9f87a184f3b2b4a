"""Which instance serves a request: the tenant's own, else round-robin over the healthy ones.

An instance that answered 429 or was unreachable cools down for the time it asked for
(``retry-after-ms``) or ``Gateway:UnhealthyCooldownSeconds``; round-robin skips it meanwhile
and uses it again afterwards. When every instance is cooling down, all are tried anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from .state import StateStore

POOL = "default"


class Router:
    def __init__(
        self,
        instances: Sequence[str],
        mappings: Mapping[str, str],
        store: StateStore,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._instances = tuple(instances)
        self._mappings = dict(mappings)
        self._store = store
        self._clock = clock
        self._cooling_until: dict[str, float] = {}

    @property
    def instances(self) -> tuple[str, ...]:
        return self._instances

    async def candidates(self, tenant: str) -> tuple[str, ...]:
        """Instances to try, in order: the first is the choice, the rest are failover."""
        own = self._mappings.get(tenant)
        if own is not None:
            return (own,)
        if not self._instances:
            return ()
        now = self._clock()
        healthy = [n for n in self._instances if self._cooling_until.get(n, 0.0) <= now]
        pool = healthy or list(self._instances)
        slot = await self._store.next_slot(POOL)
        start = slot % len(pool)
        return tuple(pool[start:] + pool[:start])

    def cool_down(self, instance: str, seconds: float) -> None:
        until = self._clock() + max(0.0, seconds)
        self._cooling_until[instance] = max(until, self._cooling_until.get(instance, 0.0))
