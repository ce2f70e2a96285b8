"""Viewer access: configured keys checked in constant time, and signed session cookies. Pure.

The dashboard reads Kafka only, so it has no key table like ingest's: its viewer keys are a
setting. A browser trades a key for a session token (`<expiry>.<hmac>`), set as an HttpOnly
cookie, because EventSource cannot send headers.
"""

from __future__ import annotations

import hashlib
import hmac

COOKIE = "pulse_dashboard_session"


class ViewerAccess:
    def __init__(self, keys: tuple[str, ...], *, secret: str = "", ttl_s: int) -> None:
        if not keys:
            raise ValueError("at least one viewer key is required")
        self._digests = tuple(hashlib.sha256(k.encode()).digest() for k in keys)
        # Derived from the keys when not given: sessions survive a restart, end on a key change.
        material = secret.encode() if secret else b"\0".join(sorted(self._digests))
        self._secret = hashlib.sha256(b"pulse-dashboard-session\0" + material).digest()
        self.ttl_s = ttl_s

    def key_ok(self, presented: str | None) -> bool:
        if not presented:
            return False
        digest = hashlib.sha256(presented.encode()).digest()
        ok = False
        for known in self._digests:  # every key compared: time does not say which matched
            ok |= hmac.compare_digest(digest, known)
        return ok

    def _sign(self, expiry: int) -> str:
        return hmac.new(self._secret, f"viewer.{expiry}".encode(), hashlib.sha256).hexdigest()

    def issue(self, *, now_s: float) -> str:
        expiry = int(now_s) + self.ttl_s
        return f"{expiry}.{self._sign(expiry)}"

    def session_ok(self, token: str | None, *, now_s: float) -> bool:
        if not token:
            return False
        expiry_text, _, signature = token.partition(".")
        if not expiry_text.isdigit() or len(expiry_text) > 12:
            return False
        expiry = int(expiry_text)
        if expiry < now_s:
            return False
        return hmac.compare_digest(signature, self._sign(expiry))
