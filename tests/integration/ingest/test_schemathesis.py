"""Property-based run of schemathesis over the live OpenAPI (through nginx): positive and
negative examples for every operation, and not one 5xx answer."""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis  # a dev dependency (root dependency-groups.dev): missing is a failure
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 100


def _load_schema() -> Any:
    """The app's own OpenAPI document, built in-process: collection needs no running server.
    Requests still go over the network to the live app behind nginx (`base_url`)."""
    from ingest.app import create_app
    from ingest.settings import IngestSettings

    loaded = schemathesis.openapi.from_dict(create_app(IngestSettings()).openapi())
    # The suite's target: INGEST_TEST_API_URL when set (as for every other test here), else
    # nginx's fixed port.
    base_url = os.environ.get("INGEST_TEST_API_URL") or os.environ.get(
        "PULSE_API_URL", "http://127.0.0.1:58000"
    )
    loaded.config.update(base_url=base_url)
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=EXAMPLES_PER_OPERATION,
    )
    return loaded


schema = _load_schema()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_a_server_error(case: Any, api_key: str) -> None:
    case.call_and_validate(headers={"X-API-Key": api_key}, checks=[not_a_server_error], timeout=10)
