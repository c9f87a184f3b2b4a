"""The port of the budget store: one row per tenant, changed by optimistic read-modify-write.

The store knows nothing of limits: it keeps, per key, a :data:`Row` (what was granted in each
time bucket) and applies a pure ``change`` to it atomically. The memory adapter runs the change
in place; the Table adapter reads the entity and its ETag, applies the change and writes it back
``If-Match`` that ETag, re-running the change on a conflict. So ``change`` must have no side
effects: it may run more than once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple, Protocol, TypeVar

T = TypeVar("T")


class Tally(NamedTuple):
    """Tokens and requests (granted in a bucket, wanted, or owed back). A named tuple: the limiter
    makes several per request, a third of the cost of a frozen dataclass each."""

    tokens: int = 0
    requests: int = 0

    def __add__(self, other: Tally) -> Tally:  # type: ignore[override]  # sums, not tuple concatenation
        return Tally(self.tokens + other.tokens, self.requests + other.requests)

    def __sub__(self, other: Tally) -> Tally:
        return Tally(self.tokens - other.tokens, self.requests - other.requests)

    def __bool__(self) -> bool:
        return bool(self.tokens or self.requests)


Row = Mapping[int, Tally]  # bucket index -> granted in that bucket (still counting)


class StoreUnavailable(Exception):
    """The store could not be used; ``reason`` is a metric label (``error``, ``contention``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class BudgetStore(Protocol):
    """Where the buckets of every tenant live (memory: one process; Table storage: all replicas)."""

    async def update(self, key: str, change: Callable[[Row], tuple[Row, T]]) -> T:
        """Apply ``change`` to the row of ``key`` (empty if none) atomically; return its result.

        Raises :class:`StoreUnavailable` when the store cannot be reached or stays contended.
        """
        ...

    async def aclose(self) -> None: ...
