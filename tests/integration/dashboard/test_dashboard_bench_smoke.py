"""The dashboard benchmark runs end to end with a small N and prints its figures line."""

from __future__ import annotations

import pytest
from bench_smoke import bench_figures, run_bench

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


def test_bench_quick_prints_four_figures(stack_env: dict[str, str]) -> None:
    figures = bench_figures(run_bench("dashboard/run.py", "--quick", env=stack_env, timeout_s=170))
    assert [f["name"].split(" (")[0] for f in figures] == [
        "dashboard frames delivered/s",
        "dashboard Kafka record -> client p99",
        "dashboard memory per idle client",
        "dashboard longest client queue, a tenth of clients not reading",
    ]
    assert figures[0]["value"] > 0 and figures[0]["baseline"] > 0
    assert 0 < figures[3]["value"] <= 512  # the stuck readers' queues stayed bounded
