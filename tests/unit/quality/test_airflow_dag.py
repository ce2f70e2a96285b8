"""The Airflow DAG file parses and calls the same commands on the CronJobs' schedules
(checked with `ast`: no Airflow install needed)."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
DAG_FILE = REPO / "deploy" / "airflow" / "pulse_quality.py"
BASE = REPO / "deploy" / "k8s" / "base" / "quality"


def keyword(call: ast.Call, name: str) -> object:
    return next(ast.literal_eval(k.value) for k in call.keywords if k.arg == name)


def test_dags_run_the_cronjobs_commands_on_their_schedules() -> None:
    tree = ast.parse(DAG_FILE.read_text(), filename=str(DAG_FILE))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    dags = {keyword(c, "dag_id"): keyword(c, "schedule") for c in calls if c.func.id == "DAG"}
    commands = [keyword(c, "bash_command") for c in calls if c.func.id == "BashOperator"]
    assert commands == ["python -m quality check", "python -m quality report"]

    cron = {}
    for job in ("check", "report"):
        doc = yaml.safe_load((BASE / f"cronjob-{job}.yaml").read_text())
        container = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == [job]
        cron[job] = doc["spec"]["schedule"]
    assert dags == {"pulse_quality_checks": cron["check"], "pulse_daily_digests": cron["report"]}
