"""Fixtures for the archiver integration tests (helpers live in archiver_harness)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from archiver_harness import ArchiverProcess


@pytest.fixture
def archivers(tmp_path: Path) -> Iterator[list[ArchiverProcess]]:
    """Every archiver a test starts is killed at teardown, whatever happened."""
    started: list[ArchiverProcess] = []
    yield started
    for proc in started:
        proc.stop_quietly()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path
