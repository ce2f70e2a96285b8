"""`python -m quality check|report|schedule`: the entry points of the CronJobs and `pulse`.

`check` runs every checks file, prints one line per check, publishes the results (archived as
dq_results) and an alert per failed check, and exits 1 when a check failed, 2 when a checks
file is wrong. `report` renders the daily digests. `schedule` runs `check` every
QUALITY_CHECK_INTERVAL_S and `report` daily at QUALITY_REPORT_HOUR_UTC (for `pulse up`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from contracts.events import DataQualityResult
from query.archive import ArchiveCatalog, local_location, s3_location
from query.engine import QueryEngine
from query.settings import ArchiveSettings
from servicekit import metrics
from servicekit.health import HealthServer
from servicekit.logging import configure_logging
from servicekit.settings import KafkaSettings, load_settings

from quality import archive_views, checkfile, reports, runner
from quality.publish import publish
from quality.settings import QualitySettings

log = logging.getLogger(__name__)
SERVICE = "quality"


def catalog_for(settings: QualitySettings, archive: ArchiveSettings) -> ArchiveCatalog:
    if settings.local_archive_dir:
        return ArchiveCatalog(local_location(settings.local_archive_dir), ttl_s=0)
    return ArchiveCatalog(s3_location(archive, prefix=settings.archive_prefix), ttl_s=0)


def format_line(result: DataQualityResult) -> str:
    status = "PASS" if result.passed else "FAIL"
    observed = "-" if result.observed_value is None else f"{result.observed_value:g}"
    where = f"[{result.partition}]" if result.partition else ""
    line = (
        f"{status} {result.dataset}.{result.check}{where} "
        f"observed={observed} threshold={result.threshold}"
    )
    if not result.passed and result.detail:
        line += f" ({result.detail})"
    return line


def check(
    settings: QualitySettings,
    archive: ArchiveSettings,
    kafka: KafkaSettings | None,
    *,
    now: datetime | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """One run; returns the exit code (0 all passed, 1 a check failed, 2 a bad checks file)."""
    try:
        files = checkfile.load_dir(settings.checks_dir)
    except checkfile.CheckFileError as exc:
        echo(f"ERROR {exc}")
        return 2
    sources = catalog_for(settings, archive).datasets()
    con = archive_views.connect(sources, threads=settings.duckdb_threads)
    try:
        report = runner.run(files, con, sources, now=now or datetime.now(UTC))
    finally:
        con.close()
    for result in report.results:
        echo(format_line(result))
        metrics.DQ_CHECKS.labels(result.dataset, result.outcome).inc()
    failed = report.failed
    echo(
        f"{len(report.results) - len(failed)} passed, {len(failed)} failed "
        f"in {report.elapsed_s:.1f} s (run {report.run_id})"
    )
    if settings.publish and kafka is not None:
        asyncio.run(
            publish(
                kafka,
                results_topic=settings.results_topic,
                alerts_topic=settings.alerts_topic,
                results=report.results,
                alerts=[runner.alert_for(r) for r in failed],
            )
        )
    return 1 if failed else 0


def report(
    settings: QualitySettings,
    archive: ArchiveSettings,
    kafka: KafkaSettings | None,
    *,
    now: datetime | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Render both digests, archive them under QUALITY_REPORTS_PREFIX and publish a `report`
    alert per digest; returns the exit code."""
    now = now or datetime.now(UTC)
    engine = QueryEngine(catalog_for(settings, archive), max_rows=10_000, timeout_s=120)
    if settings.local_archive_dir:
        target = local_location(f"{settings.local_archive_dir}/../{settings.reports_prefix}")
    else:
        target = s3_location(archive, prefix=settings.reports_prefix)
    alerts = []
    for digest in (
        reports.customer_digest(engine, now=now),
        reports.market_digest(engine, now=now),
    ):
        keys = reports.archive(target, digest)
        echo(digest.text())
        echo(f"archived {digest.team} digest: {', '.join(sorted(keys.values()))}")
        alerts.append(reports.report_alert(digest, keys, now=now))
    if settings.publish and kafka is not None:
        asyncio.run(
            publish(
                kafka,
                results_topic=settings.results_topic,
                alerts_topic=settings.alerts_topic,
                results=[],
                alerts=alerts,
            )
        )
    return 0


def schedule(
    settings: QualitySettings, archive: ArchiveSettings, kafka: KafkaSettings | None
) -> None:
    """`check` every QUALITY_CHECK_INTERVAL_S, `report` once a day from
    QUALITY_REPORT_HOUR_UTC: the smallest scheduler, for `pulse up` (Kubernetes uses the
    CronJobs, Airflow its DAG). `/healthz` (alive while the loop turns) and `/metrics` on
    QUALITY_HTTP_PORT. A failing run is logged and the loop goes on."""
    asyncio.run(_schedule(settings, archive, kafka))


async def _schedule(
    settings: QualitySettings, archive: ArchiveSettings, kafka: KafkaSettings | None
) -> None:
    health = HealthServer(host=settings.http_host, port=settings.http_port)
    beat = time.monotonic()

    async def alive() -> tuple[bool, str]:
        idle = time.monotonic() - beat
        return idle < settings.check_interval_s + 600, f"last run {idle:.0f} s ago"

    health.liveness["scheduler"] = alive
    await health.start()
    metrics.SERVICE_INFO.labels(SERVICE).set(1)
    last_report_day = None
    try:
        while True:
            beat = time.monotonic()
            now = datetime.now(UTC)
            try:
                # checks and digests are blocking (DuckDB, Soda): off the loop serving /healthz
                await asyncio.to_thread(check, settings, archive, kafka, now=now)
                if now.hour >= settings.report_hour_utc and last_report_day != now.date():
                    await asyncio.to_thread(report, settings, archive, kafka, now=now)
                    last_report_day = now.date()
            except Exception:  # keep scheduling; the next run may succeed
                log.exception("scheduled quality run failed")
            beat = time.monotonic()
            await asyncio.sleep(settings.check_interval_s)
    finally:
        metrics.SERVICE_INFO.labels(SERVICE).set(0)
        await health.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command (default `check`); settings come from the environment, so `--help` reads
    no setting and connects nowhere."""
    parser = argparse.ArgumentParser(
        prog="python -m quality",
        description="Pulse data quality: declared checks over the archive and daily digests.",
        epilog="Settings: QUALITY_*, S3_*/AWS_* and KAFKA_* environment variables "
        "(services/quality/README.md).",
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="check",
        choices=("check", "report", "schedule"),
        help="check: run every checks file (exit 1 if a check failed, 2 on a bad file); "
        "report: render and archive the daily digests; schedule: check every "
        "QUALITY_CHECK_INTERVAL_S and report daily (default: check)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    command = parse_args(argv).command  # exits 2 naming an unknown command
    settings = load_settings(QualitySettings)
    archive = load_settings(ArchiveSettings)
    kafka = load_settings(KafkaSettings)
    configure_logging(SERVICE, level=settings.log_level, json=settings.log_json)
    if command == "check":
        sys.exit(check(settings, archive, kafka))
    if command == "report":
        sys.exit(report(settings, archive, kafka))
    schedule(settings, archive, kafka)
