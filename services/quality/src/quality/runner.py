"""One data-quality run: every checks file verified by Soda Core on DuckDB over the archive.

Soda Core evaluates every check (freshness, row counts, missing, invalid, duplicates,
reference data, schema, SQL metrics and failed-rows queries); this module only feeds it the
archive's views and turns its results into `DataQualityResult` events and alerts.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import yaml
from contracts.events import AlertKind, AlertRaised, AlertSeverity, DataQualityResult
from contracts.identity import alert_event_id, quality_result_event_id
from soda_core.contracts.api.verify_api import verify_contract_locally
from soda_core.contracts.contract_verification import CheckOutcome, CheckResult
from soda_core.contracts.impl.check_types.schema_check import SchemaCheckResult
from soda_duckdb.common.data_sources.duckdb_data_source import DuckDBDataSourceImpl
from soda_duckdb.common.data_sources.duckdb_data_source_connection import (
    DuckDBDataSource,
    DuckDBExistingConnectionProperties,
)

from quality.checkfile import DATA_SOURCE, CheckFile

log = logging.getLogger(__name__)

SourceMap = Mapping[str, pa.Table | ds.Dataset]


@dataclass(frozen=True, slots=True)
class RunReport:
    run_id: str
    run_time: datetime
    results: list[DataQualityResult]
    elapsed_s: float

    @property
    def failed(self) -> list[DataQualityResult]:
        return [r for r in self.results if not r.passed]


def data_source(con: duckdb.DuckDBPyConnection, sources: SourceMap) -> DuckDBDataSourceImpl:
    """Soda's DuckDB data source on a cursor of `con`: Soda closes its connection after each
    contract, and a cursor's close leaves `con` and its views open. Registered Arrow objects
    are per cursor, so the cursor registers them again (a name binding, no data copied)."""
    cursor = con.cursor()
    for name, source in sources.items():
        cursor.register(f"_arrow_{name}", source)
    model = DuckDBDataSource(
        name=DATA_SOURCE,
        connection=DuckDBExistingConnectionProperties(duckdb_connection=cursor),
    )
    return DuckDBDataSourceImpl(data_source_model=model)


def run(
    check_files: Sequence[CheckFile],
    con: duckdb.DuckDBPyConnection,
    sources: SourceMap,
    *,
    now: datetime,
) -> RunReport:
    """Verify every file's contract on `con` (views over `sources`, from
    `archive_views.connect`); `now` is Soda's NOW (freshness, `${soda.NOW}`)."""
    started = time.monotonic()
    run_id = uuid.uuid4().hex
    results: list[DataQualityResult] = []
    with tempfile.TemporaryDirectory(prefix="pulse-quality-") as tmp:
        for check_file in check_files:
            contract_path = Path(tmp) / f"{check_file.dataset.name}.yml"
            contract_path.write_text(yaml.safe_dump(check_file.contract, sort_keys=False))
            session = verify_contract_locally(
                data_sources=[data_source(con, sources)],
                contract_file_path=str(contract_path),
                variables={"NOW": now.isoformat()},
            )
            thresholds = check_file.thresholds
            checked = 0
            for verification in session.contract_verification_results:
                for check_result in verification.check_results:
                    checked += 1
                    results.append(
                        _result(check_result, check_file, thresholds, run_id=run_id, now=now)
                    )
            if session.has_errors or not checked:
                # Soda could not run the contract (its own parse error, a SQL error): fail
                # loudly with Soda's messages rather than report a silently empty run.
                errors = session.get_errors_str() if session.has_errors else "no checks ran"
                results.append(
                    DataQualityResult(
                        run_id=run_id,
                        check="contract",
                        check_type="contract",
                        dataset=check_file.dataset.name,
                        observed_value=None,
                        threshold="runs",
                        passed=False,
                        outcome="error",
                        detail=f"{check_file.path}: {errors}"[:2000],
                        event_time=now,
                        run_time=now,
                        event_id=quality_result_event_id(
                            run_id, check_file.dataset.name, "contract", None
                        ),
                    )
                )
    return RunReport(run_id, now, results, time.monotonic() - started)


def _result(
    check_result: CheckResult,
    check_file: CheckFile,
    thresholds: dict[str, str],
    *,
    run_id: str,
    now: datetime,
) -> DataQualityResult:
    check: Any = check_result.check
    name = str(check.name or check.type)
    column = getattr(check, "column_name", None)
    observed = check_result.threshold_value
    diagnostics = check_result.diagnostic_metric_values or {}
    outcome = check_result.outcome
    detail = ", ".join(
        f"{k}={v}" for k, v in sorted(diagnostics.items()) if k != "dataset_rows_tested"
    )
    if isinstance(check_result, SchemaCheckResult):
        # Soda's schema result lists the differences; observed = how many there are.
        missing = check_result.expected_column_names_not_actual
        extra = check_result.actual_column_names_not_expected
        retyped = [
            f"{m.column}: {m.get_expected()} != {m.get_actual()}"
            for m in check_result.column_data_type_mismatches
        ]
        observed = len(missing) + len(extra) + len(retyped)
        detail = f"missing={missing} extra={extra} retyped={retyped}"
    return DataQualityResult(
        run_id=run_id,
        check=name,
        check_type=str(check.type),
        dataset=check_file.dataset.name,
        partition=column,
        observed_value=None if observed is None else float(observed),
        threshold=thresholds.get(name, "-"),
        passed=outcome == CheckOutcome.PASSED,
        outcome=str(outcome.name).lower(),
        detail=detail or None,
        event_time=now,
        run_time=now,
        event_id=quality_result_event_id(run_id, check_file.dataset.name, name, column),
    )


def alert_for(result: DataQualityResult) -> AlertRaised:
    """The alert a failed check raises; its id repeats within the hour (a rerun dedupes)."""
    hour = result.run_time.strftime("%Y-%m-%dT%H")
    alert_id = hashlib.sha256(
        f"{AlertKind.DATA_QUALITY}|{result.dataset}|{result.check}|{hour}".encode()
    ).hexdigest()[:32]
    observed = "none" if result.observed_value is None else f"{result.observed_value:g}"
    return AlertRaised(
        alert_id=alert_id,
        kind=AlertKind.DATA_QUALITY,
        subject=result.dataset,
        severity=AlertSeverity.WARNING,
        message=(
            f"data quality: {result.dataset} check {result.check} failed "
            f"(observed {observed}, threshold {result.threshold})"
        ),
        event_time=result.run_time,
        details={
            "check": result.check,
            "check_type": result.check_type,
            "dataset": result.dataset,
            "observed_value": observed,
            "threshold": result.threshold,
            "run_id": result.run_id,
        },
        raised_at=result.run_time,
        event_id=alert_event_id(alert_id),
    )
