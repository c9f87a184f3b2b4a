"""Which instance serves a request: the tenant's own, else round-robin over the healthy ones.

An instance that answered 429 or was unreachable cools down for the time it asked for
(``retry-after-ms``) or ``Gateway:UnhealthyCooldownSeconds``; round-robin skips it meanwhile
and uses it again afterwards. When every instance is cooling down, all are tried anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence

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

    async def candidates(self, tenant: str, *, among: Collection[str] | None = None) -> tuple[str, ...]:
        """Instances to try, in order: the first is the choice, the rest are failover.

        ``among`` (the compatible API: the instances serving a deployment) narrows the choice: the
        tenant's own instance when it is among them, else round-robin over them.
        """
        own = self._mappings.get(tenant)
        if own is not None and (among is None or own in among):
            return (own,)
        instances = self._instances if among is None else tuple(n for n in self._instances if n in among)
        if not instances:
            return ()
        now = self._clock()
        healthy = [n for n in instances if self._cooling_until.get(n, 0.0) <= now]
        pool = healthy or list(instances)
        slot = await self._store.next_slot(POOL)
        start = slot % len(pool)
        return tuple(pool[start:] + pool[:start])

    def cool_down(self, instance: str, seconds: float) -> None:
        until = self._clock() + max(0.0, seconds)
        self._cooling_until[instance] = max(until, self._cooling_until.get(instance, 0.0))
