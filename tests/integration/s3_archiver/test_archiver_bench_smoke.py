"""The benchmark script runs end to end with a small N and prints its figures line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[3]


def test_bench_quick_prints_three_figures(stack_env: dict[str, str]) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "s3_archiver" / "run.py"), "--quick"],
        env={**os.environ, **stack_env},
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    names = [f["name"] for f in result["figures"]]
    assert names == [
        "s3_archiver throughput",
        "s3_archiver parquet encoding CPU share",
        "s3_archiver peak RSS under backlog",
    ]
    assert all(f["value"] > 0 for f in result["figures"])
