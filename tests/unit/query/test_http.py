"""The HTTP endpoint: key required, 400 with the reason, exact decimals, GET and POST alike."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from query.app import create_app
from query.engine import QueryEngine
from servicekit.auth import ApiKeyVerifier

KEY = "test-key-0123456789abcdef"


@pytest.fixture
def client(engine: QueryEngine) -> TestClient:
    return TestClient(create_app(engine, ApiKeyVerifier(KEY)))


def test_missing_or_wrong_key_is_401(client: TestClient) -> None:
    assert client.get("/v1/query", params={"sql": "SELECT 1"}).status_code == 401
    response = client.get("/v1/query", params={"sql": "SELECT 1"}, headers={"X-API-Key": "nope"})
    assert response.status_code == 401


def test_get_answers_rows_with_exact_decimals(client: TestClient) -> None:
    response = client.get(
        "/v1/query",
        params={
            "sql": "SELECT symbol, close FROM market_candles WHERE symbol = 'ACME' "
            "ORDER BY window_start LIMIT 1"
        },
        headers={"X-API-Key": KEY},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["columns"] == ["symbol", "close"]
    assert body["rows"] == [["ACME", "100.000000000000000000"]]
    assert body["tables"] == ["market_candles"]


def test_post_with_row_limit_reports_truncation(client: TestClient) -> None:
    response = client.post(
        "/v1/query",
        json={"sql": "SELECT * FROM range(50)", "max_rows": 5},
        headers={"X-API-Key": KEY},
    )
    assert response.status_code == 200
    assert response.json()["row_count"] == 5 and response.json()["truncated"] is True


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("DROP TABLE alerts", "only SELECT statements are allowed, got DROP"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv() is not allowed"),
        ("SELECT 1; SELECT 2", "exactly one statement"),
        ("SELECT nope FROM alerts", "query failed"),
    ],
)
def test_refusals_are_400_with_the_reason(client: TestClient, sql: str, reason: str) -> None:
    response = client.post("/v1/query", json={"sql": sql}, headers={"X-API-Key": KEY})
    assert response.status_code == 400
    assert reason in response.json()["detail"]


def test_health_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    client.get("/v1/query", params={"sql": "SELECT 1"}, headers={"X-API-Key": KEY})
    assert "pulse_queries_total" in client.get("/metrics").text
