"""API keys: hashing, scopes and the constant-time check (pure; the key store is an adapter).

Keys are 256-bit random tokens, so one SHA-256 is enough: a slow password hash protects
low-entropy secrets, and these have none to brute-force. Only the hash is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    PRODUCTS_WRITE = "products:write"
    REVIEWS_WRITE = "reviews:write"
    REVIEWS_READ = "reviews:read"
    REVIEWS_DELETE = "reviews:delete"
    TICKS_WRITE = "ticks:write"


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    name: str
    key_hash: bytes
    scopes: frozenset[Scope]


class UnauthenticatedError(Exception):
    """Missing or unknown key: 401."""


class ForbiddenError(Exception):
    """A valid key without the scope the operation needs: 403."""


def new_key() -> str:
    """A fresh random key, url-safe, 43 characters (256 bits)."""
    return "pk_" + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Known scopes only: an unknown scope string in the table grants nothing."""
    known = {scope.value for scope in Scope}
    return frozenset(Scope(v) for v in values if v in known)


def authorize(presented: str | None, keys: Mapping[bytes, ApiKey], needed: Scope) -> ApiKey:
    """Resolve the presented key and check the scope.

    The dict lookup is by SHA-256 digest, so its timing reveals nothing usable about the key;
    the final `compare_digest` keeps the equality check itself constant-time.
    """
    if not presented:
        raise UnauthenticatedError("missing X-API-Key header")
    digest = hash_key(presented)
    found = keys.get(digest)
    if found is None or not hmac.compare_digest(found.key_hash, digest):
        raise UnauthenticatedError("unknown API key")
    if needed not in found.scopes:
        raise ForbiddenError(f"this API key may not {needed.value}")
    return found
