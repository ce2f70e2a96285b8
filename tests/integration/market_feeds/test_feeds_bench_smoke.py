"""The benchmark script runs end to end with a tiny N and prints every figure it promises."""

from __future__ import annotations

import pytest
from bench_smoke import bench_figures, run_bench

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_bench_runs_with_small_n(stack_env: dict[str, str]) -> None:
    result = run_bench(
        "market_feeds/run.py",
        "--quick",
        "--venues",
        "coinbase,kraken",
        env=stack_env,
        timeout_s=220,
    )
    figures = bench_figures(result)
    by_name = {f["name"]: f for f in figures}
    for venue in ("coinbase", "kraken"):
        figure = by_name[f"market_feeds {venue}: trades decoded and published"]
        assert figure["value"] > 0 and figure["baseline"] > 0 and figure["ratio"] > 0
    [latency] = [f for f in figures if f["unit"] == "ms"]
    assert latency["value"] > 0
