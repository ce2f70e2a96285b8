"""The API-key cache: refresh on age, at most one refresh a second on a miss, and keep
serving the last good copy while the database is down."""

from __future__ import annotations

import pytest
from ingest.auth import ALL_SCOPES, ApiKey, Scope, UnauthenticatedError, hash_key
from ingest.keystore import KeyStore
from servicekit.clock import FakeClock


class Table:
    def __init__(self) -> None:
        self.keys: dict[bytes, ApiKey] = {}
        self.loads = 0
        self.down = False

    def add(self, key: str) -> None:
        digest = hash_key(key)
        self.keys[digest] = ApiKey(
            id=len(self.keys) + 1, name=key, key_hash=digest, scopes=ALL_SCOPES
        )

    async def load(self) -> dict[bytes, ApiKey]:
        self.loads += 1
        if self.down:
            raise ConnectionRefusedError("database down")
        return dict(self.keys)


async def test_new_key_works_after_a_miss_refresh_but_misses_are_rate_limited() -> None:
    table, clock = Table(), FakeClock()
    store = KeyStore(table.load, clock=clock, refresh_s=60)
    table.add("pk_a")
    assert (await store.authorize("pk_a", Scope.REVIEWS_WRITE)).name == "pk_a"
    table.add("pk_b")
    with pytest.raises(UnauthenticatedError):  # within a second of the last load: no reload
        await store.authorize("pk_b", Scope.REVIEWS_WRITE)
    for _ in range(50):
        with pytest.raises(UnauthenticatedError):
            await store.authorize("pk_wrong", Scope.REVIEWS_WRITE)
    assert table.loads == 1
    clock.advance(1.5)
    assert (await store.authorize("pk_b", Scope.REVIEWS_WRITE)).name == "pk_b"
    assert table.loads == 2


async def test_cached_keys_keep_working_while_the_database_is_down() -> None:
    table, clock = Table(), FakeClock()
    table.add("pk_a")
    store = KeyStore(table.load, clock=clock, refresh_s=5)
    await store.authorize("pk_a", Scope.TICKS_WRITE)
    table.down = True
    clock.advance(10)
    assert (await store.authorize("pk_a", Scope.TICKS_WRITE)).name == "pk_a"


async def test_no_cache_and_database_down_raises_for_a_503() -> None:
    table = Table()
    table.down = True
    store = KeyStore(table.load, clock=FakeClock(), refresh_s=5)
    with pytest.raises(ConnectionRefusedError):
        await store.authorize("pk_a", Scope.TICKS_WRITE)
