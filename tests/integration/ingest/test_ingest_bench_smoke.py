"""The benchmark script runs end to end with a tiny N (it is not itself a timed test)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]


def test_bench_script_runs_with_small_n(ingest_env: dict[str, str]) -> None:
    # Not a skip: `make test`/`make integration` install wrk first (`make bench-tools`).
    assert shutil.which("wrk"), "wrk is missing: `make bench-tools` installs it (Debian)"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench/ingest/bench_ingest.py"), "--smoke"],
        env={**os.environ, **ingest_env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "via nginx, TCP upstream" in done.stdout
    assert "via nginx, unix-socket upstream" in done.stdout
    assert "non-2xx or socket errors: 0" in done.stdout
