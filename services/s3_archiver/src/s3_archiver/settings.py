"""Typed, frozen settings: `ARCHIVER_*` plus the unprefixed S3 variables of `.stack/env`."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from contracts import datasets, topics
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from servicekit.settings import ServiceSettings

from s3_archiver.window_buffer import BufferPolicy

DEFAULT_TOPIC_DATASETS: dict[str, str] = {d.topic.name: d.name for d in datasets.ALL}


class S3Settings(BaseSettings):
    """Where the archive is; unprefixed so the stack's `.stack/env` applies as is."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    s3_endpoint_url: str | None = None  # None: AWS itself
    s3_bucket: str = Field(min_length=3)
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_region: str = "us-east-1"


class ArchiverSettings(ServiceSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix="ARCHIVER_")

    http_port: int = Field(default=58012, ge=0, le=65535)
    group_id: str = "s3_archiver"
    # topic name → dataset name (contracts.datasets); JSON in the environment. Tests map
    # their own topic names onto the same datasets.
    topic_datasets: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_TOPIC_DATASETS))
    root_prefix: str = Field(default="archive", min_length=1)  # below the bucket
    dlq_topic: str = topics.DLQ.name

    max_records: int = Field(default=1_000_000, ge=1)
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)  # accounted bytes per object
    window_s: float = Field(default=600.0, gt=0)
    idle_grace_s: float = Field(default=60.0, ge=0)
    # Above this many accounted bytes in all buffers, fetching pauses (and the largest
    # buffer is written early). Accounted bytes: value size + 160 per record (see README).
    max_buffered_bytes: int = Field(default=192 * 1024 * 1024, ge=1024)

    # A member killed with SIGKILL holds its partitions until this expires (broker min 6000).
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    poll_timeout_ms: int = Field(default=500, ge=10)
    poll_max_records: int = Field(default=20_000, ge=1)
    # Fetched records decoded straight into columns (record_blocks); false reads aiokafka's
    # records one by one (~1 µs a record more), should an aiokafka upgrade need it.
    record_blocks: bool = True
    # Objects encoded and uploaded at once, beside the consume loop (each holds one object's
    # Parquet bytes in memory on top of the buffers).
    writer_concurrency: int = Field(default=2, ge=1, le=8)
    multipart_threshold_bytes: int = Field(default=32 * 1024 * 1024, ge=5 * 1024 * 1024)
    multipart_part_bytes: int = Field(default=16 * 1024 * 1024, ge=5 * 1024 * 1024)
    s3_attempts: int = Field(default=3, ge=1)  # per call, before the archiver backs off
    s3_backoff_base_s: float = Field(default=0.2, gt=0)
    s3_backoff_max_s: float = Field(default=30.0, gt=0)
    s3_timeout_s: float = Field(default=10.0, gt=0)
    write_catalog: bool = True

    # TEST ONLY: os._exit(86) right after the N-th upload ("after_upload", before its commit)
    # or right after the commit that follows it ("after_commit"). Crash tests use it to hit
    # the gap between the two steps deterministically. Empty in every real deployment.
    test_crash_point: Literal["", "after_upload", "after_commit"] = ""
    test_crash_at_flush: int = Field(default=1, ge=1)

    @field_validator("topic_datasets")
    @classmethod
    def _known_datasets(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one topic must be archived")
        unknown = sorted(set(value.values()) - set(datasets.BY_NAME))
        if unknown:
            raise ValueError(f"unknown datasets {unknown}; known: {sorted(datasets.BY_NAME)}")
        return value

    @property
    def policy(self) -> BufferPolicy:
        return BufferPolicy(
            max_records=self.max_records,
            max_bytes=self.max_bytes,
            window=timedelta(seconds=self.window_s),
            idle_grace=timedelta(seconds=self.idle_grace_s),
        )
