"""The algorithm: a sliding window of ``N`` buckets that holds "at most B in ANY window of W".

Time is cut into buckets of ``W / N`` seconds (``N`` = 10 by default). A replica never admits a
request directly against storage: it is *granted* a slice of budget in the current bucket and
admits requests from that slice locally, only while that bucket lasts. The store keeps, per
tenant, what was granted in each recent bucket, and keeps one invariant:

    every run of N + 1 consecutive buckets holds at most B

A window of W seconds overlaps at most N + 1 consecutive buckets, and what a replica admits in a
bucket is at most what it was granted there, so no window of W ever admits more than B, whatever
the number of replicas. A grant into bucket ``k`` therefore checks every run that contains ``k``
(:func:`headroom`). The price is resolution: a tenant that floods steadily gets ``B`` per
``W x (N + 1) / N`` (91 % of its budget with N = 10), and a fixed window's 2x burst at a boundary
cannot happen.

Unused slices and the difference between a request's estimate and its real usage are given back
to the bucket they were granted in (:class:`Exchange` ``returns``), so the budget is reusable.

Why not GCRA (the anchor's suggestion): GCRA admits ``burst + rate x W`` in a window of W; holding
that to B forces a burst/rate split that either halves the steady throughput or refuses any
request bigger than the burst. Counting per bucket keeps the full budget usable by any request up
to B, in one small row per tenant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._port import Row, Tally

UNLIMITED_ROOM = 2**62


@dataclass(frozen=True, slots=True)
class SlidingWindow:
    seconds: int
    buckets: int = 10

    @property
    def width(self) -> float:
        return self.seconds / self.buckets

    def bucket_at(self, now: float) -> int:
        return math.floor(now / self.width)

    def start_of(self, bucket: int) -> float:
        return bucket * self.width

    def oldest_live(self, bucket: int) -> int:
        """The oldest bucket that still shares a run (a possible window) with ``bucket``."""
        return bucket - self.buckets


def headroom(counts: Mapping[int, int], bucket: int, budget: int, buckets: int) -> int:
    """How much more ``bucket`` may take: ``budget`` minus the fullest run of ``buckets + 1``
    consecutive buckets that contains it."""
    fullest = 0
    for start in range(bucket - buckets, bucket + 1):
        fullest = max(fullest, sum(counts.get(b, 0) for b in range(start, start + buckets + 1)))
    return budget - fullest


def first_fit(counts: Mapping[int, int], after: int, need: int, budget: int, buckets: int) -> int:
    """The first bucket after ``after`` where ``need`` fits, if nothing else is granted meanwhile."""
    last = max(counts, default=after)
    for bucket in range(after + 1, max(last, after) + buckets + 2):
        if headroom(counts, bucket, budget, buckets) >= need:
            return bucket
    return max(last, after) + buckets + 1  # every run containing it is empty (need <= budget)


@dataclass(frozen=True, slots=True)
class Grant:
    """What one exchange gave: ``granted`` (0 when refused), the headroom left after it, and
    when refused, the dimension (``tokens`` / ``requests``) and the bucket where it would fit."""

    granted: Tally
    headroom: Tally
    refused: str | None = None
    retry_bucket: int | None = None


@dataclass(frozen=True, slots=True)
class Exchange:
    """One read-modify-write of a tenant's row: give back ``returns``, then grant at least
    ``need`` and up to ``want`` in ``bucket`` (nothing when ``need`` does not fit).

    ``budget``: per window; 0 in a dimension = unlimited (not counted). Pure: it may run more
    than once (optimistic concurrency retries).
    """

    window: SlidingWindow
    budget: Tally
    bucket: int
    need: Tally
    want: Tally
    returns: Mapping[int, Tally] = field(default_factory=dict)

    def __call__(self, row: Row) -> tuple[Row, Grant]:
        oldest = self.window.oldest_live(self.bucket)
        counts = {b: t for b, t in row.items() if b >= oldest}
        for bucket, back in self.returns.items():
            if bucket in counts:
                left = counts[bucket] - back
                counts[bucket] = Tally(max(0, left.tokens), max(0, left.requests))
        tokens = {b: t.tokens for b, t in counts.items()}
        requests = {b: t.requests for b, t in counts.items()}
        room = Tally(self._room(tokens, self.budget.tokens), self._room(requests, self.budget.requests))
        refused = ("tokens" if self.need.tokens > room.tokens
                   else "requests" if self.need.requests > room.requests else None)  # fmt: skip
        if refused is not None:
            bucket = max(
                first_fit(tokens, self.bucket, self.need.tokens, self.budget.tokens, self.window.buckets)
                if self.budget.tokens else self.bucket + 1,
                first_fit(requests, self.bucket, self.need.requests, self.budget.requests, self.window.buckets)
                if self.budget.requests else self.bucket + 1,
            )  # fmt: skip
            return _clean(counts), Grant(Tally(), room, refused, bucket)
        granted = Tally(
            min(max(self.want.tokens, self.need.tokens), room.tokens) if self.budget.tokens else 0,
            min(max(self.want.requests, self.need.requests), room.requests) if self.budget.requests else 0,
        )
        if granted:
            counts[self.bucket] = counts.get(self.bucket, Tally()) + granted
        return _clean(counts), Grant(granted, room - granted)

    def _room(self, counts: Mapping[int, int], budget: int) -> int:
        if not budget:
            return UNLIMITED_ROOM
        return headroom(counts, self.bucket, budget, self.window.buckets)


def _clean(counts: dict[int, Tally]) -> dict[int, Tally]:
    return {b: t for b, t in counts.items() if t}
