"""The bench runner finds each script's result line and tolerates scripts without one."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from pulse_cli.scripts import load_script

ROOT = Path(__file__).resolve().parents[3]


def runner() -> ModuleType:
    return load_script(ROOT / "bench" / "run_all.py", "run_all")


def test_last_json_line_with_figures_wins() -> None:
    out = "\n".join(
        [
            "warming up",
            '{"figures": [{"name": "old", "value": 1}]}',
            '{"not": "figures"}',
            '{"figures": [{"name": "p50", "value": 12.5, "unit": "ms", "pass": true}]}',
            "bye",
        ]
    )
    assert runner().parse_result(out) == [
        {"name": "p50", "value": 12.5, "unit": "ms", "pass": True}
    ]


def test_no_result_line_is_none() -> None:
    assert runner().parse_result("Traceback …\n{broken json") is None


def test_discovers_the_e2e_benchmarks() -> None:
    scripts = {p.relative_to(ROOT / "bench").as_posix() for p in runner().discover()}
    assert {"e2e/latency.py", "e2e/archive_latency.py"} <= scripts
    assert "run_all.py" not in scripts


def test_the_dashboards_end_to_end_bench_runs_with_the_e2e_ones() -> None:
    """bench/dashboard/e2e.py needs the pipeline services: it runs right after bench/e2e/'s
    scripts (on the services started for them), and also with `--only dashboard`."""
    scripts = [p.relative_to(ROOT / "bench").as_posix() for p in runner().discover()]
    assert scripts.index("dashboard/e2e.py") > scripts.index("e2e/latency.py")
    assert "dashboard/run.py" in scripts
    only = [p.relative_to(ROOT / "bench").as_posix() for p in runner().discover({"dashboard"})]
    assert only == ["dashboard/run.py", "dashboard/e2e.py"]
