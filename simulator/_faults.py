"""The queue of injected faults of one simulated instance."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from simulator._config import FaultSpec


class FaultQueue:
    """Faults in FIFO order; each chat request takes the first one that matches its deployment.

    A fault with a ``count`` is used that many times, then removed; without one it stays until
    cleared (and shadows the faults queued after it for the deployments it matches).
    """

    def __init__(self, initial: tuple[FaultSpec, ...] = ()) -> None:
        self._items: list[list[Any]] = []  # [spec, remaining or None]
        for spec in initial:
            self.add(spec)

    def add(self, spec: FaultSpec) -> None:
        self._items.append([spec, spec.count])

    def clear(self) -> None:
        self._items.clear()

    def __bool__(self) -> bool:
        return bool(self._items)

    def take(self, deployment: str) -> FaultSpec | None:
        """The fault for this request, consuming one use of it; None when no fault applies."""
        for position, item in enumerate(self._items):
            spec: FaultSpec = item[0]
            if spec.deployment is not None and spec.deployment != deployment:
                continue
            if item[1] is not None:
                item[1] -= 1
                if item[1] <= 0:
                    del self._items[position]
            return spec
        return None

    def describe(self) -> list[dict[str, Any]]:
        """The pending faults as JSON, with how many uses remain."""
        return [{**asdict(spec), "remaining": remaining} for spec, remaining in self._items]
