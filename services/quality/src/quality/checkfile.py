"""Checks files: one YAML file per archive dataset, a Soda data contract with Pulse's names.

A file names its dataset (`dataset: market_candles`) and the columns it checks; the loader
validates both against `contracts.datasets` (an unknown dataset or column fails with the
file, line and reason) and turns the file into the Soda contract Soda Core runs:
the dataset identifier of the DuckDB data source, and a `columns` list holding the whole
schema derived from the contract (name and DuckDB type), so a `schema` check detects drift
against `libs/contracts` without anyone listing columns by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from contracts import datasets
from contracts.datasets import Dataset

DATA_SOURCE = "archive"
SCHEMA = "main"


class CheckFileError(ValueError):
    """A checks file is wrong; the message is `<file>:<line>: <reason>`."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CheckFile:
    path: Path
    dataset: Dataset
    contract: dict[str, Any]  # the Soda contract, ready to dump

    @property
    def check_count(self) -> int:
        """How many checks the file declares: one result line each in a run."""
        return len(_iter_checks(self.contract))

    @property
    def thresholds(self) -> dict[str, str]:
        """Each named check's threshold as written, for dq_results."""
        out: dict[str, str] = {}
        for _column, check_type, body in _iter_checks(self.contract):
            name = body.get("name") if isinstance(body, dict) else None
            if name:
                threshold = body.get("threshold") if isinstance(body, dict) else None
                out[str(name)] = _describe_threshold(check_type, threshold, body)
        return out


def _describe_threshold(check_type: str, threshold: Any, body: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in (threshold or {}).items()]
    for key in (
        "valid_min",
        "valid_max",
        "valid_values",
        "invalid_values",
        "valid_reference_data",
    ):
        if key in body:
            parts.append(f"{key}={body[key]}")
    if not threshold and check_type not in ("row_count", "schema"):
        parts.insert(0, "must_be=0")  # Soda's default for count checks
    if check_type == "row_count" and not threshold:
        parts.insert(0, "must_be_greater_than=0")
    return ", ".join(parts) or "-"


def _iter_checks(contract: dict[str, Any]) -> list[tuple[str | None, str, Any]]:
    found: list[tuple[str | None, str, Any]] = []
    for check in contract.get("checks") or []:
        for check_type, body in check.items():
            found.append((None, check_type, body or {}))
    for column in contract.get("columns") or []:
        for check in column.get("checks") or []:
            for check_type, body in check.items():
                found.append((column["name"], check_type, body or {}))
    return found


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _mapping_get(node: yaml.Node, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None


def known_columns(dataset: Dataset) -> dict[str, str]:
    """Every column a dataset's table has (contract fields, archive columns, `dt`, `hour`),
    with its DuckDB type — derived from the archiver's own schema of the contract model."""
    from quality.archive_views import duckdb_types

    return duckdb_types(dataset)


def load(path: Path) -> CheckFile:
    """Parse and validate one checks file; raises CheckFileError naming file and line."""
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise CheckFileError(path, (mark.line + 1) if mark else 1, f"not YAML: {exc}") from exc
    if root is None or not isinstance(document, dict):
        raise CheckFileError(path, 1, "expected a mapping with `dataset:` and checks")
    dataset_node = _mapping_get(root, "dataset")
    if dataset_node is None or not isinstance(dataset_node, yaml.ScalarNode):
        raise CheckFileError(path, 1, "missing `dataset:` (one of the archive's datasets)")
    dataset = datasets.BY_NAME.get(dataset_node.value)
    if dataset is None:
        raise CheckFileError(
            path,
            _line(dataset_node),
            f"unknown dataset {dataset_node.value!r}; known: {sorted(datasets.BY_NAME)}",
        )
    columns = known_columns(dataset)
    _check_column_names(path, root, dataset, columns)

    declared = {c["name"]: c for c in document.get("columns") or []}
    contract: dict[str, Any] = {
        key: value for key, value in document.items() if key not in ("dataset", "columns")
    }
    contract["dataset"] = f"{DATA_SOURCE}/{SCHEMA}/{dataset.name}"
    # Soda tells checks of one type apart by their qualifier: the check's name is one.
    column_checks = _iter_checks({"columns": document.get("columns") or []})
    for _column, _type, body in _iter_checks(contract) + column_checks:
        if isinstance(body, dict) and body.get("name") and "qualifier" not in body:
            body["qualifier"] = body["name"]
    # The whole contract schema, with the file's column checks merged in: the schema check
    # compares the archive's table against exactly this list.
    # Soda compares a type's base name and reads DuckDB's parameters (a decimal's precision)
    # separately, so the expected type is the base name: DECIMAL, MAP, TIMESTAMP WITH TIME ZONE.
    contract["columns"] = [
        {
            "name": name,
            "data_type": data_type.split("(", 1)[0],
            **_column_extras(declared.get(name)),
        }
        for name, data_type in columns.items()
    ]
    return CheckFile(path=path, dataset=dataset, contract=contract)


def _column_extras(declared: dict[str, Any] | None) -> dict[str, Any]:
    if not declared:
        return {}
    return {k: v for k, v in declared.items() if k not in ("name", "data_type")}


def _check_column_names(
    path: Path, root: yaml.Node, dataset: Dataset, columns: dict[str, str]
) -> None:
    def require(node: yaml.Node) -> None:
        if not isinstance(node, yaml.ScalarNode) or node.value not in columns:
            value = getattr(node, "value", node)
            raise CheckFileError(
                path,
                _line(node),
                f"unknown column {value!r} in dataset {dataset.name!r}; "
                f"known: {', '.join(sorted(columns))}",
            )

    columns_node = _mapping_get(root, "columns")
    if isinstance(columns_node, yaml.SequenceNode):
        for item in columns_node.value:
            name = _mapping_get(item, "name")
            if name is None:
                raise CheckFileError(path, _line(item), "a column entry needs `name:`")
            require(name)
    checks_node = _mapping_get(root, "checks")
    if isinstance(checks_node, yaml.SequenceNode):
        for item in checks_node.value:
            if not isinstance(item, yaml.MappingNode):
                continue
            for _key, body in item.value:
                column = _mapping_get(body, "column")
                if column is not None:
                    require(column)
                listed = _mapping_get(body, "columns")
                if isinstance(listed, yaml.SequenceNode):
                    for name in listed.value:
                        require(name)


def load_dir(folder: Path) -> list[CheckFile]:
    """Every `*.yml` file of a folder, validated, sorted by name."""
    files = sorted(folder.glob("*.yml"))
    if not files:
        raise CheckFileError(folder, 0, "no checks files (*.yml)")
    return [load(p) for p in files]
