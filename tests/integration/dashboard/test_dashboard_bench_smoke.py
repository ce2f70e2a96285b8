"""The dashboard benchmark runs end to end with a small N and prints its figures line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[3]


def test_bench_quick_prints_four_figures(stack_env: dict[str, str]) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "dashboard" / "run.py"), "--quick"],
        env={**os.environ, **stack_env},
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])["figures"]
    assert [f["name"].split(" (")[0] for f in figures] == [
        "dashboard frames delivered/s",
        "dashboard Kafka record -> client p99",
        "dashboard memory per idle client",
        "dashboard longest client queue, a tenth of clients not reading",
    ]
    assert figures[0]["value"] > 0 and figures[0]["baseline"] > 0
    assert 0 < figures[3]["value"] <= 512  # the stuck readers' queues stayed bounded
