"""The alert rules and the Grafana dashboard against a live /metrics: a real s3_archiver on the
stack is scraped, and every metric a rule or panel names must be on the page (servicekit's
catalogue registers every family in every service, so one service's page lists them all), with
the process CPU and memory samples the dashboard's per-service panels read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pulse_cli.scripts import load_script

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[3]
PORT = 61630  # this helper's range (61600-61699)


@pytest.fixture(scope="module")
def monitoring() -> ModuleType:
    return load_script(REPO / "tests" / "deploy" / "pulse_monitoring.py", "pulse_it_monitoring")


@pytest.fixture(scope="module")
def scrape(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        **stack_env,
        "ARCHIVER_HTTP_PORT": str(PORT),
        "ARCHIVER_GROUP_ID": f"it-monitoring-{tag}",
        "ARCHIVER_ROOT_PREFIX": f"it-monitoring/{tag}/archive",
        "ARCHIVER_TOPIC_DATASETS": json.dumps({f"it.monitoring.{tag}": "market_candles"}),
        "ARCHIVER_WRITE_CATALOG": "false",
        "ARCHIVER_LOG_JSON": "false",
    }
    log = (tmp_path_factory.mktemp("monitoring") / "archiver.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "s3_archiver"], cwd=REPO, env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"s3_archiver exited; see {log.name}"
            try:
                page = httpx.get(f"http://127.0.0.1:{PORT}/metrics", timeout=2)
                if page.status_code == 200 and 'pulse_service_up{service="s3_archiver"} 1' in (
                    page.text
                ):
                    return page.text
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"no /metrics on {PORT}; see {log.name}"
            time.sleep(0.3)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_every_rule_and_panel_names_a_metric_on_the_live_page(
    scrape: str, monitoring: ModuleType
) -> None:
    families = list(text_string_to_metric_families(scrape))
    live = monitoring.exported_names((f.name, f.type) for f in families)
    live |= monitoring.PROMETHEUS_OWN
    missing = {}
    for title, expr in [*monitoring.rule_expressions(), *monitoring.dashboard_expressions()]:
        names = monitoring.metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        if names - live:
            missing[title] = sorted(names - live)
    assert not missing, missing


def test_the_page_carries_the_cpu_and_memory_the_dashboard_plots(scrape: str) -> None:
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
    }
    assert samples["process_cpu_seconds_total"] > 0
    assert samples["process_resident_memory_bytes"] > 10_000_000
