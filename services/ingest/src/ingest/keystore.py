"""An in-process cache of the api_keys table, so authentication costs no database round trip.

Refreshed when older than `refresh_s`, and at most once a second on an unknown key (so a
newly created key works at once, while a flood of wrong keys cannot hammer PostgreSQL).
While PostgreSQL is down the last good copy keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from servicekit.clock import Clock

from ingest.auth import ApiKey, Scope, UnauthenticatedError, authorize

log = logging.getLogger(__name__)

_MISS_REFRESH_MIN_S = 1.0


class KeyStore:
    def __init__(
        self,
        load: Callable[[], Awaitable[Mapping[bytes, ApiKey]]],
        *,
        clock: Clock,
        refresh_s: float,
    ) -> None:
        self._load = load
        self._clock = clock
        self._refresh_s = refresh_s
        self._keys: Mapping[bytes, ApiKey] | None = None
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _refresh(self, *, older_than_s: float) -> Mapping[bytes, ApiKey]:
        async with self._lock:
            if self._keys is not None and (
                self._clock.monotonic() - self._loaded_at < older_than_s
            ):
                return self._keys  # someone refreshed while we waited
            try:
                fresh = await self._load()
            except Exception:
                if self._keys is None:
                    raise  # nothing cached: the caller answers 503
                log.warning("api key refresh failed; serving the cached keys", exc_info=True)
                fresh = self._keys
            self._keys = fresh
            self._loaded_at = self._clock.monotonic()
            return fresh

    async def authorize(self, presented: str | None, needed: Scope) -> ApiKey:
        keys = self._keys
        if keys is None or self._clock.monotonic() - self._loaded_at >= self._refresh_s:
            keys = await self._refresh(older_than_s=self._refresh_s)
        try:
            return authorize(presented, keys, needed)
        except UnauthenticatedError:
            if not presented or self._clock.monotonic() - self._loaded_at < _MISS_REFRESH_MIN_S:
                raise
        keys = await self._refresh(older_than_s=_MISS_REFRESH_MIN_S)
        return authorize(presented, keys, needed)
