"""Retry timing and rate limits: exponential backoff with full jitter, Retry-After, a token
bucket. Pure; time comes from the caller (an injected clock)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 1.0
    max_s: float = 300.0
    # Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): a delay drawn
    # uniformly below the exponential cap spreads retries of many notifications the most;
    # `min_fraction` keeps a floor so a retry never fires at once.
    min_fraction: float = 0.5

    def delay_s(self, attempts: int, *, rng: random.Random) -> float:
        """The wait after the `attempts`-th failed attempt (1 = first failure)."""
        cap = min(self.max_s, self.base_s * 2 ** max(0, attempts - 1))
        return rng.uniform(cap * self.min_fraction, cap)


def retry_after_s(header: str | None, *, now: datetime) -> float | None:
    """Seconds a `Retry-After` header asks for: delta-seconds or an HTTP date; None if absent
    or unreadable (then the backoff alone applies)."""
    if not header:
        return None
    value = header.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


class TokenBucket:
    """`rate_per_s` sends a second on average, bursts of up to `burst`. Monotonic seconds in."""

    def __init__(self, *, rate_per_s: float, burst: int, now_mono: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at = now_mono

    def _refill(self, now_mono: float) -> None:
        elapsed = max(0.0, now_mono - self._at)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate_per_s)
        self._at = now_mono

    def wait_s(self, now_mono: float) -> float:
        """0 and a token taken when one is available, else how long until one is."""
        self._refill(now_mono)
        # A hair under 1 counts as a token: after sleeping exactly the wait asked for, float
        # rounding can leave 0.999…, and the next wait would be too small to move the clock.
        if self._tokens >= 1.0 - 1e-9:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_s
