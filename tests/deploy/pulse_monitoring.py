"""Shared by the monitoring checks: the metric names a PromQL expression uses, and the names a
metric family is exported under. Used offline against servicekit's catalogue (tests/deploy)
and against a live /metrics scrape (tests/integration/monitoring)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "pulse-alerts.rules.yaml"
RULE_TESTS = MONITORING / "pulse-alerts.test.yaml"
DASHBOARD = MONITORING / "pulse-dashboard.json"

# Series Prometheus makes itself, not a Pulse service.
PROMETHEUS_OWN = frozenset({"up"})
# Sample names a family of each type is exported under (prometheus_client's suffixes).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "unknown": ("",),
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_DURATION = re.compile(r"\[[^\]]*\]")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_PROMQL_WORDS = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "rate",
        "irate",
        "increase",
        "delta",
        "idelta",
        "deriv",
        "predict_linear",
        "histogram_quantile",
        "time",
        "abs",
        "ceil",
        "floor",
        "round",
        "clamp",
        "clamp_min",
        "clamp_max",
        "absent",
        "absent_over_time",
        "changes",
        "resets",
        "label_replace",
        "label_join",
        "vector",
        "scalar",
        "sort",
        "sort_desc",
        "timestamp",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "last_over_time",
        "quantile_over_time",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    ]
)


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: strings, label matchers, grouping clauses,
    ranges, numbers, functions and operators removed."""
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _DURATION.sub(" ", text)
    text = text.replace("$__rate_interval", " ")
    return {
        name
        for name in _NAME.findall(text)
        if name not in _PROMQL_WORDS and not name.startswith("$")
    }


def exported_names(families: Iterable[tuple[str, str]]) -> set[str]:
    """Sample names for (family name, type) pairs as a /metrics page carries them."""
    return {name + suffix for name, kind in families for suffix in SUFFIXES[kind]}


def rule_expressions() -> Iterator[tuple[str, str]]:
    """(alert name, expression) of every rule in the rules file."""
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule["alert"], rule["expr"]


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    """(panel title, expression) of every query on the dashboard."""
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
