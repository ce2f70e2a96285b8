"""The query endpoint behind nginx on the real stack: key, guard and answers over S3."""

from __future__ import annotations

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_query_through_nginx(pipeline_env: dict[str, str]) -> None:
    url = pipeline_env["PULSE_API_URL"] + "/v1/query"
    key = {"X-API-Key": pipeline_env["PULSE_API_KEY"]}
    assert httpx.get(url, params={"sql": "SELECT 1"}, timeout=30).status_code == 401

    ok = httpx.post(
        url, json={"sql": "SELECT count(*) AS n FROM reviews_latest"}, headers=key, timeout=60
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["columns"] == ["n"]

    refused = httpx.get(url, params={"sql": "COPY alerts TO '/tmp/x.csv'"}, headers=key, timeout=30)
    assert refused.status_code == 400
    assert "got COPY" in refused.json()["detail"]
