"""Fixtures for market_feeds on the real stack: the cdc_processor worker fixtures, reused."""

from __future__ import annotations

from pathlib import Path

from pulse_cli.scripts import load_script

_cdc = load_script(
    Path(__file__).resolve().parents[1] / "cdc_processor" / "conftest.py", "feeds_it_cdc_fixtures"
)
migrated = _cdc.migrated
make_worker = _cdc.make_worker
