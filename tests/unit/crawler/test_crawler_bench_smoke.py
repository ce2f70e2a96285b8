"""The benchmark script runs with a small N and prints its figures line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_bench_quick_run_prints_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "crawler" / "run.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    [figure] = result["figures"]
    assert figure["unit"] == "pages/s" and figure["value"] > 0 and figure["baseline"] > 0
