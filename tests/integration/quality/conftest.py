"""Fixtures of the quality tests: a unique archive prefix on the stack's S3, unique topics."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from query.archive import ArchiveLocation, s3_location
from query.settings import ArchiveSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))

import archive_data


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def archive_prefix(run_id: str) -> str:
    return f"quality-test-{run_id}/archive"


@pytest.fixture
def archive_settings(stack_env: dict[str, str]) -> ArchiveSettings:
    return ArchiveSettings(
        s3_endpoint_url=stack_env["S3_ENDPOINT_URL"],
        s3_bucket=stack_env["S3_BUCKET"],
        aws_access_key_id=stack_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack_env["AWS_SECRET_ACCESS_KEY"],
        aws_region=stack_env.get("AWS_REGION", "us-east-1"),
    )


@pytest.fixture
def location(archive_settings: ArchiveSettings, archive_prefix: str) -> ArchiveLocation:
    loc = s3_location(archive_settings, prefix=archive_prefix)
    yield loc
    archive_data.delete_tree(loc, loc.root.rsplit("/", 1)[0])
