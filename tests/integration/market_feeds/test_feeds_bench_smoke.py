"""The benchmark script runs end to end with a tiny N and prints every figure it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[3]


def test_bench_runs_with_small_n(stack_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "bench/market_feeds/run.py", "--quick", "--venues", "coinbase,kraken"],
        cwd=REPO,
        env={**os.environ, **stack_env},
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])["figures"]
    by_name = {f["name"]: f for f in figures}
    for venue in ("coinbase", "kraken"):
        figure = by_name[f"market_feeds {venue}: trades decoded and published"]
        assert figure["value"] > 0 and figure["baseline"] > 0 and figure["ratio"] > 0
    [latency] = [f for f in figures if f["unit"] == "ms"]
    assert latency["value"] > 0
