"""Backoff with jitter, Retry-After, the token bucket."""

from __future__ import annotations

import random
from datetime import timedelta

from notifier.retry_policy import Backoff, TokenBucket, retry_after_s
from notifier_factories import T0


def test_backoff_doubles_within_jitter_bounds_and_caps() -> None:
    backoff = Backoff(base_s=1.0, max_s=60.0)
    rng = random.Random(7)
    for attempts, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (30, 60.0)]:
        delays = [backoff.delay_s(attempts, rng=rng) for _ in range(200)]
        assert all(cap * 0.5 <= d <= cap for d in delays)
        assert max(delays) - min(delays) > cap * 0.3  # jittered, not constant


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_s("7", now=T0) == 7.0
    date = (T0 + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_s(date, now=T0) == 30.0
    assert retry_after_s("soon", now=T0) is None
    assert retry_after_s(None, now=T0) is None


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=3, now_mono=0.0)
    assert [bucket.wait_s(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.wait_s(0.0) == 0.5
    assert bucket.wait_s(0.5) == 0.0
    assert bucket.wait_s(0.5) == 0.5
