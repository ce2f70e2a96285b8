"""Checks files: the shipped ones load; an unknown dataset or column fails with the file,
line and reason; the contract's schema is derived from libs/contracts."""

from __future__ import annotations

from pathlib import Path

import pytest
from contracts import datasets
from quality import checkfile
from quality.settings import DEFAULT_CHECKS_DIR


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.yml"
    path.write_text(text)
    return path


def test_shipped_files_load_with_the_contract_schema() -> None:
    files = {f.dataset.name: f for f in checkfile.load_dir(DEFAULT_CHECKS_DIR)}
    assert set(files) == set(datasets.BY_NAME), "every archived dataset has a checks file"
    columns = {c["name"]: c["data_type"] for c in files["market_candles"].contract["columns"]}
    assert columns["open"] == "DECIMAL" and columns["symbol"] == "VARCHAR"
    assert {"_topic", "_offset", "dt", "hour", "vwap"} <= set(columns)
    assert files["market_candles"].contract["dataset"] == "archive/main/market_candles"


def test_unknown_dataset_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "# header\n\ndataset: market_trades_v9\nchecks:\n  - row_count:\n")
    with pytest.raises(checkfile.CheckFileError) as err:
        checkfile.load(path)
    assert str(err.value).startswith(f"{path}:3: unknown dataset 'market_trades_v9'")


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        (
            "dataset: market_candles\ncolumns:\n  - name: price\n    checks:\n      - missing:\n",
            3,
            "price",
        ),
        (
            "dataset: market_candles\nchecks:\n  - freshness:\n      column: ts\n"
            "      threshold: {unit: hour, must_be_less_than: 2}\n",
            4,
            "ts",
        ),
        (
            "dataset: alerts\nchecks:\n  - duplicate:\n      columns: [alert_id, kindd]\n",
            4,
            "kindd",
        ),
    ],
)
def test_unknown_column_names_file_line_and_column(
    tmp_path: Path, text: str, line: int, column: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(checkfile.CheckFileError) as err:
        checkfile.load(path)
    assert err.value.line == line
    assert f"unknown column {column!r}" in err.value.reason
