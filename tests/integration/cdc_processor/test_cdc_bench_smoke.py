"""The benchmark script runs end to end with a tiny N and prints both ratios."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[3]


def test_bench_runs_with_small_n(migrated: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "bench/cdc_processor/run.py", "--reviews", "300", "--ticks", "600"],
        cwd=REPO,
        env={**os.environ, **migrated},
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reviews: bare loop" in result.stdout and "ratio" in result.stdout
    assert "ticks:   bare loop" in result.stdout
