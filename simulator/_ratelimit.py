"""Per-deployment TPM / RPM limits over a sliding 60 s window, as Azure OpenAI enforces them."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Admission:
    """The limiter's verdict for one request; ``remaining_*`` is None for an unlimited dimension."""

    allowed: bool
    retry_after_ms: int = 0
    remaining_tokens: int | None = None
    remaining_requests: int | None = None
    exceeded: str = ""  # "tokens" | "requests" when refused


class SlidingWindowLimiter:
    """Admits a request when the last 60 s plus this request stay within ``tpm`` and ``rpm``.

    Refused requests consume nothing. A limit of 0 means unlimited.
    """

    def __init__(self, tpm: int, rpm: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._tpm = tpm
        self._rpm = rpm
        self._clock = clock
        self._entries: deque[tuple[float, int]] = deque()
        self._used_tokens = 0

    @property
    def unlimited(self) -> bool:
        return self._tpm == 0 and self._rpm == 0

    def reset(self) -> None:
        self._entries.clear()
        self._used_tokens = 0

    def admit(self, tokens: int) -> Admission:
        """Record and allow the request, or refuse it with the wait until it would fit."""
        if self.unlimited:
            return Admission(allowed=True)
        now = self._clock()
        self._evict(now)
        if self._rpm and len(self._entries) + 1 > self._rpm:
            wait = self._entries[0][0] + WINDOW_SECONDS - now
            return self._refused(wait, "requests")
        if self._tpm and self._used_tokens + tokens > self._tpm:
            return self._refused(self._token_wait(now, tokens), "tokens")
        self._entries.append((now, tokens))
        self._used_tokens += tokens
        return Admission(
            allowed=True, remaining_tokens=self._left_tokens(), remaining_requests=self._left_requests()
        )

    def remaining(self) -> tuple[int | None, int | None]:
        """(remaining tokens, remaining requests) in the current window."""
        self._evict(self._clock())
        return self._left_tokens(), self._left_requests()

    def _refused(self, wait_s: float, exceeded: str) -> Admission:
        return Admission(
            allowed=False,
            retry_after_ms=max(1, math.ceil(wait_s * 1000)),
            remaining_tokens=self._left_tokens(),
            remaining_requests=self._left_requests(),
            exceeded=exceeded,
        )

    def _token_wait(self, now: float, tokens: int) -> float:
        """Seconds until enough recorded tokens leave the window for ``tokens`` to fit."""
        if tokens > self._tpm:
            return WINDOW_SECONDS  # can never fit: Azure still answers 429
        used = self._used_tokens
        for stamp, amount in self._entries:
            used -= amount
            if used + tokens <= self._tpm:
                return stamp + WINDOW_SECONDS - now
        return WINDOW_SECONDS

    def _evict(self, now: float) -> None:
        horizon = now - WINDOW_SECONDS
        while self._entries and self._entries[0][0] <= horizon:
            self._used_tokens -= self._entries.popleft()[1]

    def _left_tokens(self) -> int | None:
        return max(0, self._tpm - self._used_tokens) if self._tpm else None

    def _left_requests(self) -> int | None:
        return max(0, self._rpm - len(self._entries)) if self._rpm else None
