"""The end-to-end benchmarks run at a tiny size and print a result line the runner reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.mark.parametrize("script", ["latency.py", "archive_latency.py"])
def test_e2e_benchmark_prints_figures(pipeline_env: dict[str, str], script: str) -> None:
    from io import StringIO

    from pulse_cli.demo import PROCESSOR_GROUP, wait_for_backlog
    from rich.console import Console

    wait_for_backlog(pipeline_env, console=Console(file=StringIO()))
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "e2e" / script), "--quick"],
        cwd=ROOT,
        # The processor running here is the pipeline's own: the bench waits on its backlog,
        # not on that of the bench group (idle here, and behind after a benchmark ran).
        env={**os.environ, "CDC_APP_ID": PROCESSOR_GROUP},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    figures = result["figures"]
    assert figures and all({"name", "value", "unit", "pass"} <= set(f) for f in figures)
    assert all(f["value"] is not None for f in figures), figures
