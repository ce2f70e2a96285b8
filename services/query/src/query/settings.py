"""Typed settings of the query service: its own (`QUERY_*`) and the shared S3/API ones."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from servicekit.settings import ServiceSettings


class QuerySettings(ServiceSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix="QUERY_")

    http_port: int = Field(default=58002, ge=0, le=65535)
    max_rows: int = Field(default=10_000, gt=0, le=1_000_000)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_sql_chars: int = Field(default=20_000, gt=0)
    catalog_ttl_s: float = Field(default=2.0, ge=0)  # how long a listing of the archive is reused
    archive_prefix: str = "archive"
    local_archive_dir: str | None = None  # read a local folder instead of S3 (tests, offline)


class ArchiveSettings(BaseSettings):
    """Where the archive is; read without a prefix so every service shares `.stack/env`."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    s3_endpoint_url: str | None = None  # None: AWS itself
    s3_bucket: str = "pulse"
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_region: str = "us-east-1"
