"""Fixtures: the small local archive of query_archive_fixture and an engine over it."""

from __future__ import annotations

from pathlib import Path

import pytest
from query.archive import ArchiveCatalog, local_location
from query.engine import QueryEngine
from query_archive_fixture import build_archive


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    build_archive(tmp_path / "archive")
    return tmp_path / "archive"


@pytest.fixture
def engine(archive_dir: Path) -> QueryEngine:
    return QueryEngine(ArchiveCatalog(local_location(archive_dir), ttl_s=0), timeout_s=5)
