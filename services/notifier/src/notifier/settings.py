"""Typed, frozen settings: `NOTIFIER_*`. The simple case is one variable, `NOTIFIER_URLS`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from contracts import topics
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict
from servicekit.settings import ServiceSettings

from notifier.signing import decode_secret

# A comma starts a new URL only when a scheme follows: Apprise URLs keep commas in their
# queries (mailto://…?to=a@x,b@y).
_URL_SPLIT = re.compile(r"\s*,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")


class NotifierSettings(ServiceSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix="NOTIFIER_")

    http_port: int = Field(default=58004, ge=0, le=65535)  # API, /healthz, /metrics
    group_id: str = "notifier"
    alerts_topic: str = topics.ALERTS.name  # tests use their own topic
    dlq_topic: str = topics.DLQ.name

    # Apprise URLs and webhook+http(s):// signed webhooks; each one its own receiver.
    urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_secret: SecretStr | None = None  # whsec_<base64>, Standard Webhooks
    routing_file: Path | None = None
    state_dir: Path = Path("/var/lib/pulse-notifier")  # the outbox; a PVC in Kubernetes
    dashboard_url: str | None = None  # e.g. http://127.0.0.1:58000/dashboard/

    # The simple case's grouping (no routing file); "a few seconds at most".
    group_wait_s: float = Field(default=2.0, ge=0, le=10)
    group_interval_s: float = Field(default=10.0, ge=0)
    repeat_interval_s: float = Field(default=4 * 3600.0, gt=0)
    # Receiver defaults (a routing file can set them per receiver).
    rate_per_s: float = Field(default=10.0, gt=0)
    burst: int = Field(default=10, ge=1)
    concurrency: int = Field(default=4, ge=1, le=64)
    max_attempts: int = Field(default=12, ge=1)
    max_age_s: float = Field(default=6 * 3600.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)

    # Where a consumer group with no committed offset starts: "latest", so a new deployment
    # does not page people about the topic's history. Once it has committed, it resumes
    # exactly where it stopped whatever this says. Tests on fresh topics use "earliest".
    auto_offset_reset: Literal["earliest", "latest"] = "latest"
    poll_max_records: int = Field(default=500, ge=1)
    # A member killed with SIGKILL holds its partitions until this expires (broker min 6000).
    session_timeout_ms: int = Field(default=10_000, ge=1000)

    @field_validator("urls", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [u for u in _URL_SPLIT.split(value.strip()) if u]
        return value

    @field_validator("urls")
    @classmethod
    def _schemes(cls, value: list[str]) -> list[str]:
        for i, url in enumerate(value, 1):
            if "://" not in url:
                raise ValueError(f"URL {i} has no scheme (e.g. webhook+https://, mailto://)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_secret(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _something_to_do(self) -> NotifierSettings:
        if not self.urls and self.routing_file is None:
            raise ValueError("set NOTIFIER_URLS or NOTIFIER_ROUTING_FILE (nowhere to deliver)")
        if any(u.startswith("webhook+") for u in self.urls) and self.webhook_secret is None:
            raise ValueError("a webhook+http(s):// URL needs NOTIFIER_WEBHOOK_SECRET (whsec_…)")
        return self

    @property
    def webhook_key(self) -> bytes | None:
        secret = self.webhook_secret
        return None if secret is None else decode_secret(secret.get_secret_value())

    def url_receiver_names(self) -> list[str]:
        """`NOTIFIER_URLS` receivers are named `<scheme>-<position>`: `webhook-1`, `mailto-2`."""
        return [
            f"{url.split('://', 1)[0].split('+', 1)[0].lower()}-{i}"
            for i, url in enumerate(self.urls, 1)
        ]
