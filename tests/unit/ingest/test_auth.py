"""API-key hashing, scopes and authorization (pure)."""

from __future__ import annotations

import hashlib

import pytest
from ingest.auth import (
    ALL_SCOPES,
    ApiKey,
    ForbiddenError,
    Scope,
    UnauthenticatedError,
    authorize,
    hash_key,
    new_key,
    parse_scopes,
)


def _store(key: str, scopes: frozenset[Scope]) -> dict[bytes, ApiKey]:
    digest = hash_key(key)
    return {digest: ApiKey(id=1, name="k", key_hash=digest, scopes=scopes)}


def test_hash_is_sha256_of_the_key_and_never_the_key_itself() -> None:
    assert hash_key("pk_abc") == hashlib.sha256(b"pk_abc").digest()
    assert b"pk_abc" not in hash_key("pk_abc")


def test_new_keys_are_random_and_long() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(len(k) >= 40 and k.startswith("pk_") for k in keys)


def test_known_key_with_scope_is_authorized() -> None:
    store = _store("pk_good", ALL_SCOPES)
    assert authorize("pk_good", store, Scope.REVIEWS_WRITE).id == 1


@pytest.mark.parametrize("presented", [None, "", "pk_wrong", "pk_goo", "pk_good "])
def test_missing_or_unknown_key_is_unauthenticated(presented: str | None) -> None:
    with pytest.raises(UnauthenticatedError):
        authorize(presented, _store("pk_good", ALL_SCOPES), Scope.REVIEWS_READ)


def test_key_without_the_scope_is_forbidden() -> None:
    store = _store("pk_reader", frozenset({Scope.REVIEWS_READ}))
    with pytest.raises(ForbiddenError):
        authorize("pk_reader", store, Scope.TICKS_WRITE)


def test_unknown_scope_strings_grant_nothing() -> None:
    assert parse_scopes(["reviews:read", "admin", "*"]) == frozenset({Scope.REVIEWS_READ})
