"""The bench smoke tests' runner: a benchmark script end to end with a tiny N, as a
subprocess on the stack, and the figures line it prints last (bench/README.md's form)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run_bench(
    script: str, *args: str, env: dict[str, str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """`python bench/<script> args...` from the repository root with `env` over this
    process's environment; asserts that it exited 0 (showing the end of its output)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def bench_figures(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The figures of the JSON line a benchmark prints last."""
    last: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return list(last["figures"])
