"""Typed, frozen settings: every service subclasses `ServiceSettings` with its own env prefix.

`load_settings` validates at start-up; a bad value stops the process with a message that names
the environment variable, never a stack trace.
"""

from __future__ import annotations

import sys
from typing import Any, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """Where Kafka is; read without a prefix so every service shares `.stack/env`."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:59092", min_length=1)
    kafka_client_id_prefix: str = "pulse"


class ServiceSettings(BaseSettings):
    """Base of every service's settings. Subclasses set `env_prefix` (e.g. `INGEST_`)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix="PULSE_")

    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    log_json: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535)  # health/metrics port; 0 = none
    shutdown_grace_s: float = Field(default=25.0, gt=0)
    # HTTP services keep an idle keep-alive connection this long: longer than nginx keeps its
    # idle upstream connections (60 s), so nginx is the side that closes one. The other way
    # round (uvicorn's default is 5 s) a request nginx sends on a connection the app is closing
    # at that moment fails, and nginx answers a POST with 502 (it never retries those).
    http_keepalive_s: float = Field(default=75.0, gt=0)


S = TypeVar("S", bound=BaseSettings)


class SettingsError(SystemExit):
    """Raised (as an exit) when settings fail validation; the message names each variable."""


def describe_errors(cls: type[BaseSettings], exc: ValidationError) -> str:
    prefix = str(cls.model_config.get("env_prefix", "") or "")
    lines = [f"invalid settings for {cls.__name__}:"]
    for error in exc.errors():
        field = ".".join(str(part) for part in error.get("loc", ())) or "?"
        variable = f"{prefix}{field}".upper()
        lines.append(f"  {variable}: {error.get('msg', 'invalid')}")
    return "\n".join(lines)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment; on error print which variable is wrong and exit 2."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        message = describe_errors(cls, exc)
        print(message, file=sys.stderr)
        raise SettingsError(2) from exc
