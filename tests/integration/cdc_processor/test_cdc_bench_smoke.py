"""The benchmark script runs end to end with a tiny N and prints both ratios."""

from __future__ import annotations

import pytest
from bench_smoke import run_bench

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_bench_runs_with_small_n(migrated: dict[str, str]) -> None:
    result = run_bench(
        "cdc_processor/run.py", "--reviews", "300", "--ticks", "600", env=migrated, timeout_s=220
    )
    assert "reviews: bare loop" in result.stdout and "ratio" in result.stdout
    assert "ticks:   bare loop" in result.stdout
