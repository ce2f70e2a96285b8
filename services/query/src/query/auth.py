"""API-key check: sha256 of the presented key against the configured one, constant time.

The query service has no database, so it accepts exactly one key, `PULSE_API_KEY` (ingest
keeps a table of hashed keys; here the same key is configured by environment/secret).
"""

from __future__ import annotations

import hashlib
import hmac


class ApiKeyVerifier:
    def __init__(self, key: str) -> None:
        self._digest = hashlib.sha256(key.encode()).digest()

    def verify(self, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), self._digest)
