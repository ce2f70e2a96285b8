"""API-key check for services without a key database (query, notifier): sha256 of the
presented key against the one configured key (`PULSE_API_KEY`), in constant time.

Ingest keeps a table of hashed keys; these services accept the same key by environment/secret.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiKeySettings(BaseSettings):
    """The one API key a service accepts (unprefixed: the same name as in `.stack/env`)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    pulse_api_key: SecretStr = Field(min_length=16)


class ApiKeyVerifier:
    def __init__(self, key: str) -> None:
        self._digest = hashlib.sha256(key.encode()).digest()

    def verify(self, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), self._digest)
