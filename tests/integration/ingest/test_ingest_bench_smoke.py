"""The benchmark script runs end to end with a tiny N (it is not itself a timed test)."""

from __future__ import annotations

import shutil

import pytest
from bench_smoke import run_bench

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_script_runs_with_small_n(ingest_env: dict[str, str]) -> None:
    # Not a skip: `make test`/`make integration` install wrk first (`make bench-tools`).
    assert shutil.which("wrk"), "wrk is missing: `make bench-tools` installs it (Debian)"
    done = run_bench("ingest/bench_ingest.py", "--smoke", env=ingest_env, timeout_s=180)
    assert "via nginx, TCP upstream" in done.stdout
    assert "via nginx, unix-socket upstream" in done.stdout
    assert "non-2xx or socket errors: 0" in done.stdout
