"""robots.txt per RFC 9309, parsed by `protego`, cached per origin for at most 24 hours.

Fetch outcomes (RFC 9309 §2.3.1): 2xx → the rules; 4xx → no rules, everything allowed;
5xx, 429, refused or unreachable → everything disallowed (retried sooner than a success).
One fetch per origin at a time: callers asking while it is in flight (a site's pages and its
feed at start-up) await the same fetch rather than sending their own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass

from protego import Protego
from servicekit import metrics
from servicekit.clock import Clock

from crawler.extraction import decode_html
from crawler.fetcher import Fetcher, FetchError
from crawler.urls import origin_of

log = logging.getLogger(__name__)

_ERROR_CACHE_S = 600.0


@dataclass(frozen=True, slots=True)
class RobotsRules:
    """One origin's answer: rules, or a blanket allow/disallow."""

    parser: Protego | None
    allow_all: bool
    expires_at: float  # clock.monotonic() deadline

    def allows(self, url: str, agent: str) -> bool:
        if self.parser is None:
            return self.allow_all
        return bool(self.parser.can_fetch(url, agent))

    def crawl_delay(self, agent: str) -> float | None:
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(agent)
        return float(delay) if delay is not None else None


class RobotsCache:
    def __init__(self, *, fetcher: Fetcher, clock: Clock, agent: str, cache_s: float) -> None:
        self._fetcher = fetcher
        self._clock = clock
        self._agent = agent
        self._cache_s = min(cache_s, 24 * 3600.0)
        self._rules: dict[str, RobotsRules] = {}
        self._inflight: dict[str, asyncio.Task[RobotsRules]] = {}

    async def rules_for(self, url: str, *, delay_s: float) -> RobotsRules:
        origin = origin_of(url)
        cached = self._rules.get(origin)
        if cached is not None and cached.expires_at > self._clock.monotonic():
            return cached
        task = self._inflight.get(origin)
        if task is None:
            task = asyncio.create_task(self._fetch_and_keep(origin, delay_s=delay_s))
            self._inflight[origin] = task
            task.add_done_callback(functools.partial(self._forget, origin))
        # Shielded: one asker being cancelled must not cancel the fetch the others await.
        return await asyncio.shield(task)

    async def _fetch_and_keep(self, origin: str, *, delay_s: float) -> RobotsRules:
        rules = await self._fetch(origin, delay_s=delay_s)
        self._rules[origin] = rules
        return rules

    def _forget(self, origin: str, task: asyncio.Task[RobotsRules]) -> None:
        if self._inflight.get(origin) is task:
            del self._inflight[origin]

    async def aclose(self) -> None:
        """Cancel fetches nobody awaits any more (a shutdown mid-fetch)."""
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    async def allowed(self, url: str, *, delay_s: float) -> tuple[bool, float | None]:
        """(may the agent fetch url, the Crawl-delay that applies to the agent if any)."""
        rules = await self.rules_for(url, delay_s=delay_s)
        return rules.allows(url, self._agent), rules.crawl_delay(self._agent)

    async def _fetch(self, origin: str, *, delay_s: float) -> RobotsRules:
        now = self._clock.monotonic()
        metrics.ROBOTS_FETCHES.labels(origin=origin).inc()
        try:
            result = await self._fetcher.fetch(
                f"{origin}/robots.txt", delay_s=delay_s, content_types=()
            )
        except FetchError as exc:
            log.warning("robots.txt for %s unreachable (%s): disallowing", origin, exc)
            return RobotsRules(None, allow_all=False, expires_at=now + _ERROR_CACHE_S)
        if result.ok:
            text = decode_html(result.body, header_charset=result.charset)
            return RobotsRules(Protego.parse(text), allow_all=True, expires_at=now + self._cache_s)
        if 400 <= result.status < 500 and result.status != 429:
            return RobotsRules(None, allow_all=True, expires_at=now + self._cache_s)
        log.warning("robots.txt for %s answered %d: disallowing", origin, result.status)
        return RobotsRules(None, allow_all=False, expires_at=now + _ERROR_CACHE_S)
