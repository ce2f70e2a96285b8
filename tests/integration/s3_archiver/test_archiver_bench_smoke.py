"""The benchmark script runs end to end with a small N and prints its figures line."""

from __future__ import annotations

import pytest
from bench_smoke import bench_figures, run_bench

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


def test_bench_quick_prints_three_figures(stack_env: dict[str, str]) -> None:
    figures = bench_figures(
        run_bench("s3_archiver/run.py", "--quick", env=stack_env, timeout_s=170)
    )
    names = [f["name"] for f in figures]
    assert names == [
        "s3_archiver throughput",
        "s3_archiver parquet encoding CPU share",
        "s3_archiver peak RSS under backlog",
    ]
    assert all(f["value"] > 0 for f in figures)
