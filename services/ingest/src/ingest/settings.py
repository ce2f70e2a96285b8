"""Typed, frozen settings of the ingest service (`INGEST_` prefix; DATABASE_URL and PULSE_API_KEY
are read unprefixed because `.stack/env` and every other service share those names)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict
from servicekit import cdc_health
from servicekit.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix="INGEST_")

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=58001, ge=0, le=65535)
    # One process by default: on a small host shared with PostgreSQL and Kafka, one worker
    # coalesces more reviews per INSERT. With the writer defaults below, the whole machine
    # used 13-24 % less CPU per request than with two workers at a constant 1,500 req/s
    # (services/ingest/README.md). Scale out with pods, or raise this on a host with cores
    # to spare.
    workers: int = Field(default=1, ge=1, le=64)
    # Also listen on this unix socket (for an nginx on the same host); TCP stays on.
    http_uds: Path | None = None

    database_url: SecretStr = Field(
        default=SecretStr("postgresql://pulse@127.0.0.1:55432/pulse"),
        validation_alias=AliasChoices("DATABASE_URL", "INGEST_DATABASE_URL"),
    )
    # The local dev key, seeded into api_keys with every scope; unset in production.
    pulse_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("PULSE_API_KEY", "INGEST_PULSE_API_KEY")
    )

    db_pool_min_size: int = Field(default=0, ge=0)
    db_pool_max_size: int = Field(default=16, ge=1)
    # A request never waits longer than this for the database; then 503 + Retry-After.
    db_acquire_timeout_s: float = Field(default=0.3, gt=0)
    db_statement_timeout_s: float = Field(default=0.6, gt=0)
    db_connect_timeout_s: float = Field(default=0.5, gt=0)
    # Batch COPYs (up to 10,000 rows) may run this long once a connection is acquired.
    db_batch_statement_timeout_s: float = Field(default=5.0, gt=0)
    retry_after_s: int = Field(default=1, ge=1)
    # The Debezium replication slot whose lag /metrics reports (pulse_cdc_slot_lag_bytes).
    cdc_slot_name: str = Field(default=cdc_health.DEFAULT_SLOT_NAME, min_length=1)

    max_body_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    api_key_refresh_s: float = Field(default=5.0, gt=0)
    idempotency_ttl_h: int = Field(default=24, gt=0)
    access_log: bool = False
    # Serve POST /v1/reviews from a raw-ASGI path (same code, without FastAPI's per-request
    # routing and dependency overhead); off = the FastAPI route serves it.
    fast_path: bool = True
    # Concurrent flushes of coalesced single-review inserts (each one statement + commit).
    # Two: one statement fills while the other commits. More flushers split the queue into
    # smaller statements, and each statement costs PostgreSQL ~0.4 ms of CPU on top of its
    # reviews (bench/ingest/statement_cost.py).
    review_flushers: int = Field(default=2, ge=1, le=64)
    # A waking flusher waits this long before taking the queue (0 = flush at once).
    review_linger_ms: float = Field(default=5.0, ge=0, le=50)
