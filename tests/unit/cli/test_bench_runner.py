"""The bench runner finds each script's result line and tolerates scripts without one."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]


def runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "bench" / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
