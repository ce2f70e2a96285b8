"""Idempotency-Key validation, request fingerprints and replay decisions (pure)."""

from __future__ import annotations

import pytest
from ingest.idempotency import (
    IdempotencyInFlightError,
    IdempotencyKeyInvalidError,
    IdempotencyKeyMissingError,
    IdempotencyMismatchError,
    StoredResponse,
    check_key,
    fingerprint,
    replay,
)


def test_fingerprint_ignores_whitespace_and_key_order() -> None:
    a = fingerprint("POST", "/v1/reviews", b'{"rating": 1, "body": "x"}')
    b = fingerprint("post", "/v1/reviews", b'{"body":"x","rating":1}')
    assert a == b and len(a) == 32


@pytest.mark.parametrize(
    ("other_route", "other_body"),
    [
        ("/v1/reviews", b'{"rating": 2, "body": "x"}'),
        ("/v1/reviews/batch", b'{"rating": 1, "body": "x"}'),
        ("/v1/reviews", b'{"rating": 1, "body": "x", "title": null}'),
        ("/v1/reviews", b'{"rating": 1, "body": "X"}'),
    ],
)
def test_fingerprint_changes_with_route_or_any_value(other_route: str, other_body: bytes) -> None:
    base = fingerprint("POST", "/v1/reviews", b'{"rating": 1, "body": "x"}')
    assert fingerprint("POST", other_route, other_body) != base


def test_unparseable_bodies_are_fingerprinted_as_bytes() -> None:
    assert fingerprint("POST", "/r", b"not json") != fingerprint("POST", "/r", b"not json!")


def test_replay_returns_the_stored_response_for_the_same_request() -> None:
    stored = StoredResponse(201, b'{"id":"1"}')
    assert replay(stored_fingerprint=b"f", stored=stored, request_fingerprint=b"f") is stored


def test_replay_with_a_different_request_is_a_mismatch() -> None:
    with pytest.raises(IdempotencyMismatchError):
        replay(stored_fingerprint=b"f", stored=StoredResponse(201, b""), request_fingerprint=b"g")


def test_replay_before_the_first_request_finished_is_in_flight() -> None:
    with pytest.raises(IdempotencyInFlightError):
        replay(stored_fingerprint=b"f", stored=None, request_fingerprint=b"f")


@pytest.mark.parametrize("header", [None, ""])
def test_missing_key_is_rejected(header: str | None) -> None:
    with pytest.raises(IdempotencyKeyMissingError):
        check_key(header)


@pytest.mark.parametrize("header", ["a b", "x" * 256, "caf\u00e9", "tab\tkey"])
def test_malformed_key_is_rejected(header: str) -> None:
    with pytest.raises(IdempotencyKeyInvalidError):
        check_key(header)


def test_uuid_key_is_accepted() -> None:
    assert (
        check_key("0b8f6a2e-0c1a-4a51-9b7e-2f7c3f1d9c11") == "0b8f6a2e-0c1a-4a51-9b7e-2f7c3f1d9c11"
    )
