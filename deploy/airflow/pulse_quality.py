"""Airflow DAGs for an existing Airflow installation: the same commands as the CronJobs.

Copy this file into the DAGs folder of an Airflow whose workers have the `quality` package
installed (or swap the BashOperators for KubernetesPodOperators running `pulse/quality`),
with the archive's and Kafka's settings in the workers' environment (S3_BUCKET,
S3_ENDPOINT_URL, AWS_*, KAFKA_BOOTSTRAP_SERVERS). A failed check exits 1, which fails the
task: Airflow's own retries and notifications then apply on top of the data_quality alerts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

DEFAULTS = {"owner": "pulse", "retries": 0, "execution_timeout": timedelta(minutes=30)}

with DAG(
    dag_id="pulse_quality_checks",
    schedule="15 * * * *",  # hourly, as the quality-check CronJob
    start_date=datetime(2026, 12, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["pulse", "data-quality"],
) as checks:
    BashOperator(task_id="check", bash_command="python -m quality check")

with DAG(
    dag_id="pulse_daily_digests",
    schedule="30 6 * * *",  # daily, as the quality-report CronJob
    start_date=datetime(2026, 12, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["pulse", "reports"],
) as digests:
    BashOperator(task_id="report", bash_command="python -m quality report")
