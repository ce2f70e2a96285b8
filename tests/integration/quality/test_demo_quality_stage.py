"""The demo's quality stages (`pulse_cli.demo.quality_stages`) on the real stack's S3, over an
archive under the test's own prefix: every declared check is evaluated and its line printed,
both digests are rendered and archived; a bad object shows as a failed check in the note and
a FAIL line, while the stage still counts every check as evaluated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import archive_data
import pytest
from contracts import datasets
from pulse_cli import demo
from quality import checkfile
from quality.settings import DEFAULT_CHECKS_DIR, QualitySettings
from query.archive import ArchiveLocation
from rich.console import Console

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def run_stages(
    stack_env: dict[str, str], settings: QualitySettings, now: datetime
) -> tuple[list[demo.Stage], str]:
    out = StringIO()
    stages = demo.quality_stages(
        stack_env, console=Console(file=out, width=400), now=now, settings=settings
    )
    return stages, out.getvalue()


def test_quality_stages_show_every_check_and_the_digests(
    stack_env: dict[str, str], location: ArchiveLocation, archive_prefix: str
) -> None:
    now = datetime.now(UTC)
    archive_data.good_archive(location, now, hours=48)
    reports_prefix = archive_prefix.replace("/archive", "/reports")
    settings = QualitySettings(
        archive_prefix=archive_prefix, reports_prefix=reports_prefix, publish=False
    )
    declared = sum(f.check_count for f in checkfile.load_dir(DEFAULT_CHECKS_DIR))

    stages, text = run_stages(stack_env, settings, now)
    checks, digests = stages
    assert (checks.expected, checks.actual) == (declared, declared), text
    assert checks.note.startswith(f"{declared} passed, 0 failed"), checks.note
    # the lines as `pulse check` prints them, brackets kept (not eaten as markup)
    assert "PASS market_candles.low_positive[low] observed=0" in text
    assert text.count("\n  PASS ") == declared
    assert (digests.expected, digests.actual) == (2, 2), text
    bucket_root = location.root.rsplit("/", 1)[0]
    for team in ("customer", "market"):
        path = f"{bucket_root}/reports/{team}/dt={now:%Y-%m-%d}/{team}.html"
        assert path in text
        with location.filesystem.open_input_stream(path) as f:
            assert f.read().decode().startswith("<!doctype html>")

    # a zero-price candle: one failed check, named in the note and printed as a FAIL line
    minute = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
    zero = archive_data.candle("ZERO-USD", "crypto", minute, base=Decimal(10), emitted=now)
    zero = zero.model_copy(update={"low": Decimal(0)})
    archive_data.write(location, datasets.MARKET_CANDLES, [zero], start_offset=10_000_000)
    stages, text = run_stages(stack_env, settings, now)
    checks = stages[0]
    assert checks.ok and checks.actual == declared
    assert checks.note == f"{declared - 1} passed, 1 failed: market_candles.low_positive"
    assert "FAIL market_candles.low_positive[low] observed=1" in text
