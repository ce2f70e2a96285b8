"""Typed, frozen settings of the cdc_processor (`CDC_` prefix), validated at start-up."""

from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict
from servicekit.settings import ServiceSettings

from cdc_processor.phones import DEFAULT_PHONE_REGIONS, unknown_regions

# DEV ONLY: this key is public (it is in the repository), so its pseudonyms can be reversed by
# anyone holding a list of candidate authors. Every real deployment sets CDC_PSEUDONYM_KEY; the
# worker logs a warning at start-up while this default is in use.
DEV_ONLY_PSEUDONYM_KEY = "dev-only-insecure-pseudonym-key-set-CDC_PSEUDONYM_KEY"


class CdcSettings(ServiceSettings):
    """Everything the processor needs besides `KAFKA_BOOTSTRAP_SERVERS` (read unprefixed)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix="CDC_")

    app_id: str = Field(default="pulse-cdc-processor", min_length=1)  # consumer group + tables
    http_port: int = Field(default=58011, ge=0, le=65535)
    pseudonym_key: SecretStr = SecretStr(DEV_ONLY_PSEUDONYM_KEY)
    expected_languages: str = Field(default="en,fr,de", pattern=r"^[a-z]{2}(,[a-z]{2})*$")
    # Countries whose national phone formats the PII scrubber recognises in every review
    # (ISO 3166 codes; the review's locale's country is added per review). README "PII".
    phone_regions: str = Field(
        default=",".join(DEFAULT_PHONE_REGIONS), pattern=r"^[A-Z]{2}(,[A-Z]{2})*$"
    )
    topic_replication_factor: int = Field(default=1, ge=1)
    # Agents take up to this many events at a time (runtime.take_batches), handle them, write
    # each changed table key once and send the outputs; 1 = one event at a time. See README.
    batch_max: int = Field(default=500, ge=1, le=10_000)
    # ... or whatever arrived within this window: a trickle of events waits at most this long.
    batch_within_s: float = Field(default=0.02, gt=0)
    # ... or what has arrived once no event came for this long (a fetched chunk is in): a busy
    # worker starts the next batch at once instead of waiting out the window (0: never wait;
    # >= batch_within_s: always wait out the window, as Faust's take_events does). README.
    batch_idle_s: float = Field(default=0.002, ge=0)
    # The producer waits this long to batch a burst of sends (a batch's outputs and changelog
    # records are sent together, so a few ms gather them; every output waits for it).
    producer_linger_s: float = Field(default=0.005, ge=0, le=1)
    # Events a stream may buffer before Faust pauses fetching its partition (memory bound:
    # about this many records per source partition, e.g. 32,768 × ~2 KB ≈ 64 MB for reviews).
    stream_buffer_maxsize: int = Field(default=32_768, ge=64, le=1_048_576)
    # A fetch waits for this many bytes or this long, whichever comes first: records arrive in
    # chunks instead of one fetch each when they trickle in (see runtime.install). 20 ms is
    # the most a lone record waits; a backlog fills 64 KiB at once.
    fetch_min_bytes: int = Field(default=65_536, ge=1, le=16 * 1024 * 1024)
    fetch_max_wait_ms: int = Field(default=20, ge=0, le=60_000)
    # The worker's event loop. uvloop saves ~4% CPU per review, but a worker restarted after
    # kill -9 was seen stalling (main and consumer-thread loops both idle, lag growing) in the
    # integration tests while it was the default; asyncio until that is explained.
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"
    # Failover. A worker killed with SIGKILL keeps its partitions until the broker has not
    # heard its heartbeat for the session timeout; the group then rebalances and a survivor
    # takes them over (docs/scaling.md: 8.1–8.9 s measured with 8 s). Faust's default: 60 s.
    # The broker refuses less than its group.min.session.timeout.ms (6 s by default).
    session_timeout_s: float = Field(default=8.0, ge=6.0, le=300.0)
    heartbeat_interval_s: float = Field(default=1.0, gt=0, le=30.0)
    # Static membership (KIP-345): a stable id per worker (a StatefulSet pod's name) lets a
    # restart within the session timeout keep its partitions without a rebalance. A static
    # member does not leave the group on SIGTERM, so with a Deployment's changing pod names
    # it only delays the hand-over: unset (dynamic membership, clean leave) by default.
    group_instance_id: str | None = Field(default=None, min_length=1)
    # Where a new consumer group starts. "latest" skips history (tests on a shared stack).
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    # Faust wants a data directory even with the memory store; nothing durable is kept there.
    data_dir: Path = Path(tempfile.gettempdir()) / "pulse-cdc-processor"

    # reviews
    negative_rating_max: int = Field(default=2, ge=1, le=5)
    negative_text_score: float = Field(default=-0.5, ge=-1.0, le=0.0)
    burst_window_s: float = Field(default=600.0, gt=0)
    burst_threshold: int = Field(default=3, ge=2)
    orphan_reviews_per_product_max: int = Field(default=1000, ge=1)
    # A dedup claim (text → first review id) expires after this long, so the table stays
    # bounded; a crawl of the same text after that is enriched again.
    dedup_ttl_days: float = Field(default=30.0, gt=0)
    dedup_sweep_per_batch: int = Field(default=1000, ge=1)

    # market data
    candle_grace_s: float = Field(default=5.0, ge=0)
    sma_period: int = Field(default=5, ge=1)
    ema_period: int = Field(default=9, ge=1)
    price_move_pct: Decimal = Field(default=Decimal("5"), gt=0)
    price_move_window_min: int = Field(default=5, ge=1)
    stale_after_s: float = Field(default=120.0, gt=0)
    stale_check_interval_s: float = Field(default=5.0, gt=0)
    # Forming candles (market.candles.live.v1): at most one per symbol per this interval; the
    # newest one held back is sent when the interval has passed (a timer checks five times
    # per interval, so it goes out at most a fifth of the interval late).
    live_candle_interval_s: float = Field(default=0.25, gt=0, le=60)

    # liveness
    stall_after_s: float = Field(default=60.0, gt=0)

    @field_validator("phone_regions")
    @classmethod
    def _known_phone_regions(cls, value: str) -> str:
        unknown = unknown_regions(tuple(value.split(",")))
        if unknown:
            raise ValueError(f"CDC_PHONE_REGIONS: libphonenumber knows no region {unknown}")
        return value

    @property
    def phone_region_codes(self) -> tuple[str, ...]:
        return tuple(self.phone_regions.split(","))

    @model_validator(mode="after")
    def _heartbeats_fit_the_session(self) -> CdcSettings:
        # Kafka's rule of thumb: at least three heartbeats per session, or a slow one expires it.
        if self.heartbeat_interval_s * 3 > self.session_timeout_s:
            raise ValueError(
                f"CDC_HEARTBEAT_INTERVAL_S={self.heartbeat_interval_s} must be at most a third "
                f"of CDC_SESSION_TIMEOUT_S={self.session_timeout_s}"
            )
        return self

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.expected_languages.split(","))

    @property
    def uses_dev_pseudonym_key(self) -> bool:
        return self.pseudonym_key.get_secret_value() == DEV_ONLY_PSEUDONYM_KEY
