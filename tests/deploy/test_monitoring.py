"""Alert rules and the Grafana dashboard (deploy/monitoring): promtool checks and fires every
rule, the PrometheusRule and dashboard ConfigMap are generated from the one source, and every
query names a metric servicekit's catalogue exports (a live scrape checks the same in
tests/integration/monitoring)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulse_k8s import K8S, build_with_component
from pulse_monitoring import (
    DASHBOARD,
    PROMETHEUS_OWN,
    REPO,
    RULE_TESTS,
    RULES,
    dashboard_expressions,
    exported_names,
    metric_names,
    rule_expressions,
)


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: `make monitoring-tools` installs Debian's prometheus package",
            pytrace=False,
        )
    return path


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_fire_every_rule(promtool: str) -> None:
    done = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    fired = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == {name for name, _ in rule_expressions()}


def test_promtool_tests_fail_when_a_rule_breaks(promtool: str, tmp_path: Path) -> None:
    """The unit tests are not vacuous: a raised threshold makes them fail."""
    shutil.copy(RULE_TESTS, tmp_path)
    (tmp_path / RULES.name).write_text(RULES.read_text().replace("> 7200", "> 9000"))
    done = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode != 0 and "PulseFeedStale" in done.stdout + done.stderr


def test_generated_prometheus_rule_and_dashboard_configmap_are_current() -> None:
    script = K8S / "generate_monitoring.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_monitoring_component_renders_the_same_rules_and_dashboard(
    tools_bin: Path, tmp_path: Path
) -> None:
    docs = build_with_component(tools_bin, tmp_path, "monitoring")
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert rule["metadata"]["namespace"] == "pulse"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    board: dict[str, Any] = next(
        d
        for d in docs
        if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"].get("labels", {})
    )
    assert json.loads(board["data"]["pulse-pipeline.json"]) == json.loads(DASHBOARD.read_text())


def catalogue_names() -> set[str]:
    from servicekit.metrics import REGISTRY

    return exported_names((family.name, family.type) for family in REGISTRY.collect())


def test_dashboard_covers_the_operator_view() -> None:
    titles = " ".join(panel["title"] for panel in json.loads(DASHBOARD.read_text())["panels"])
    for topic in ("Throughput", "lag", "latency", "Dead-lettered", "Errors", "CPU", "memory"):
        assert topic.lower() in titles.lower(), topic


@pytest.mark.parametrize(
    ("where", "expressions"),
    [("alert rule", rule_expressions), ("dashboard panel", dashboard_expressions)],
)
def test_every_query_names_metrics_the_catalogue_exports(where: str, expressions: Any) -> None:
    known = catalogue_names() | PROMETHEUS_OWN
    unknown = {}
    for title, expr in expressions():
        names = metric_names(expr)
        assert names, f"{where} {title!r}: no metric in {expr!r}"
        if names - known:
            unknown[title] = sorted(names - known)
    assert not unknown, f"{where}s naming metrics nothing exports: {unknown}"


def test_metric_name_extraction_sees_through_promql() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (service, le) (rate("
        'pulse_processing_latency_seconds_bucket{status=~"5..", le!="x"}[$__rate_interval])))'
        ' / on (job) up{job=~"pulse-.+"} > 5'
    )
    assert metric_names(expr) == {"pulse_processing_latency_seconds_bucket", "up"}
    assert "pulse_nonexistent_total" in metric_names("rate(pulse_nonexistent_total[5m])")
    assert REPO.is_dir()
