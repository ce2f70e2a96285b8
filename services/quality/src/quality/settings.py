"""Settings of the quality jobs (`QUALITY_*`); the archive's S3 settings are the shared ones."""

from __future__ import annotations

from pathlib import Path

from contracts import topics
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from servicekit.settings import ServiceSettings

DEFAULT_CHECKS_DIR = Path(__file__).resolve().parent / "checks"


class QualitySettings(ServiceSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix="QUALITY_")

    checks_dir: Path = DEFAULT_CHECKS_DIR  # one `<dataset>.yml` per dataset
    archive_prefix: str = Field(default="archive", min_length=1)
    local_archive_dir: str | None = None  # read a local folder instead of S3 (bench, offline)
    reports_prefix: str = Field(default="reports", min_length=1)  # below the bucket
    results_topic: str = topics.QUALITY_RESULTS.name
    alerts_topic: str = topics.ALERTS.name
    publish: bool = True  # false: print only (no Kafka), e.g. a dry run
    duckdb_threads: int = Field(default=2, ge=1, le=64)
    check_interval_s: float = Field(default=3600.0, gt=0)  # `python -m quality schedule`
    report_hour_utc: int = Field(default=6, ge=0, le=23)
