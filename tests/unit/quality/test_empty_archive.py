"""An archive with nothing in it: every dataset's freshness fails (observed: none), no crash,
no Soda error, exit code 1."""

from __future__ import annotations

from pathlib import Path

from quality import main
from quality.settings import QualitySettings
from query.settings import ArchiveSettings


def test_empty_datasets_fail_freshness_without_crashing(tmp_path: Path) -> None:
    lines: list[str] = []
    settings = QualitySettings(local_archive_dir=str(tmp_path), publish=False)
    code = main.check(settings, ArchiveSettings(), None, echo=lines.append)
    assert code == 1
    freshness = [line for line in lines if ".freshness " in line]
    # market_feed_gaps and dq_results have no freshness check (their files say why)
    datasets = {"alerts", "market_candles", "market_quotes", "market_trades", "reviews_enriched"}
    assert {line.split()[1].split(".")[0] for line in freshness} == datasets
    assert all(line.startswith("FAIL") and "observed=-" in line for line in freshness)
    assert not [line for line in lines if ".contract " in line or line.startswith("ERROR")]
