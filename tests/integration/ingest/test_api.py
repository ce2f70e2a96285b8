"""Every endpoint and every bad input, through nginx to the real ingest and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

pytestmark = pytest.mark.integration


def idem() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


def review_body(sku: str, **over: Any) -> dict[str, Any]:
    body = {
        "product_sku": sku,
        "rating": 2,
        "title": "Leaks",
        "body": "It drips on the counter.",
        "author_name": "Jane Doe",
        "author_email": "jane@example.com",
        "locale": "en",
    }
    body.update(over)
    return body


def tick(**over: Any) -> dict[str, Any]:
    t = {
        "symbol": f"T{uuid.uuid4().hex[:8].upper()}",
        "asset_class": "crypto",
        "price": "67012.500000000000000001",
        "size": "0.25",
        "event_time": "2026-11-22T17:00:00.123Z",
        "venue": "demo",
    }
    t.update(over)
    return t


# --- operations -----------------------------------------------------------------------
def test_health_ready_metrics_and_docs_are_served(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "pulse_http_requests_total" in metrics.text
    spec = client.get("/openapi.json").json()
    assert "/v1/reviews" in spec["paths"]
    assert "ReviewIn" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_request_id_is_echoed(client: httpx.Client) -> None:
    r = client.get("/healthz", headers={"X-Request-ID": "test-rid-123"})
    assert r.headers["x-request-id"] == "test-rid-123"


# --- products ---------------------------------------------------------------------------
def test_product_upsert_creates_then_updates_by_sku(
    client: httpx.Client, sql: Callable[..., list[Any]]
) -> None:
    sku = f"P-{uuid.uuid4().hex[:10]}"
    created = client.post("/v1/products", json={"sku": sku, "name": "A"}, headers=idem())
    assert created.status_code == 201
    updated = client.post(
        "/v1/products", json={"sku": sku, "name": "B", "brand": "X"}, headers=idem()
    )
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    rows = sql("SELECT name, brand FROM products WHERE sku = $1", sku)
    assert [tuple(r) for r in rows] == [("B", "X")]


# --- reviews ----------------------------------------------------------------------------
def test_review_lifecycle_create_get_patch_delete(
    client: httpx.Client, product: dict[str, Any], sql: Callable[..., list[Any]]
) -> None:
    r = client.post("/v1/reviews", json=review_body(product["sku"]), headers=idem())
    assert r.status_code == 201, r.text
    review = r.json()
    rid = review["id"]
    assert review["product_sku"] == product["sku"] and review["source"] == "app"

    got = client.get(f"/v1/reviews/{rid}")
    assert got.status_code == 200 and got.json()["body"] == review["body"]

    patched = client.patch(f"/v1/reviews/{rid}", json={"rating": 5, "title": None})
    assert patched.status_code == 200
    assert patched.json()["rating"] == 5 and patched.json()["title"] is None
    row = sql("SELECT rating, title, product_id FROM reviews WHERE id = $1", uuid.UUID(rid))[0]
    assert (row["rating"], row["title"], row["product_id"]) == (5, None, product["id"])

    assert client.delete(f"/v1/reviews/{rid}").status_code == 204
    assert client.get(f"/v1/reviews/{rid}").status_code == 404
    assert client.delete(f"/v1/reviews/{rid}").status_code == 404
    assert sql("SELECT 1 FROM reviews WHERE id = $1", uuid.UUID(rid)) == []


def test_review_for_unknown_product_is_404(client: httpx.Client) -> None:
    r = client.post("/v1/reviews", json=review_body("NO-SUCH-SKU"), headers=idem())
    assert r.status_code == 404
    assert r.json()["skus"] == ["NO-SUCH-SKU"]


def test_unknown_review_id_is_404_and_bad_id_422(client: httpx.Client) -> None:
    assert client.get(f"/v1/reviews/{uuid.uuid4()}").status_code == 404
    assert client.patch(f"/v1/reviews/{uuid.uuid4()}", json={"rating": 3}).status_code == 404
    assert client.get("/v1/reviews/not-a-uuid").status_code == 422


def test_review_batch_is_copied_all_or_nothing(
    client: httpx.Client, product: dict[str, Any], sql: Callable[..., list[Any]]
) -> None:
    ok = client.post(
        "/v1/reviews/batch",
        json={"reviews": [review_body(product["sku"], rating=n) for n in (1, 2, 3)]},
        headers=idem(),
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["inserted"] == 3
    ids = [uuid.UUID(i) for i in ok.json()["ids"]]
    assert len(sql("SELECT 1 FROM reviews WHERE id = ANY($1::uuid[])", ids)) == 3

    bad = client.post(
        "/v1/reviews/batch",
        json={"reviews": [review_body(product["sku"]), review_body("NO-SUCH-SKU")]},
        headers=idem(),
    )
    assert bad.status_code == 404
    count = sql("SELECT count(*) FROM reviews WHERE product_id = $1", product["id"])[0][0]
    assert count == 3


def test_tick_batch_keeps_decimals_exact(
    client: httpx.Client, sql: Callable[..., list[Any]]
) -> None:
    ticks = [tick(), tick(asset_class="equity", price="412.07", size="100")]
    r = client.post("/v1/ticks/batch", json={"ticks": ticks}, headers=idem())
    assert r.status_code == 201 and r.json() == {"inserted": 2}
    rows = sql(
        "SELECT symbol, price, size, event_time FROM market_ticks WHERE symbol = ANY($1::text[])",
        [t["symbol"] for t in ticks],
    )
    by_symbol = {row["symbol"]: row for row in rows}
    assert by_symbol[ticks[0]["symbol"]]["price"] == Decimal("67012.500000000000000001")
    assert by_symbol[ticks[1]["symbol"]]["size"] == Decimal("100")
    assert by_symbol[ticks[0]["symbol"]]["event_time"].microsecond == 123000


def test_tick_batch_stores_unusual_but_valid_input_exactly(
    client: httpx.Client, sql: Callable[..., list[Any]]
) -> None:
    """The model's path (integer price, exponent, offset without colon) and COPY escaping."""
    ticks = [
        tick(price=5, venue="tab\there\\back\nslash"),
        tick(price="1E+2", size="0", event_time="2026-11-22 17:00:00.5+0130", venue=None),
        tick(price="0.000000000000000001", size="99999999999999999999.999999999999999999"),
    ]
    r = client.post("/v1/ticks/batch", json={"ticks": ticks}, headers=idem())
    assert r.status_code == 201, r.text
    rows = sql(
        "SELECT symbol, price, size, event_time, venue FROM market_ticks "
        "WHERE symbol = ANY($1::text[])",
        [t["symbol"] for t in ticks],
    )
    got = {row["symbol"]: row for row in rows}
    first, second, third = (got[t["symbol"]] for t in ticks)
    assert first["price"] == Decimal(5) and first["venue"] == "tab\there\\back\nslash"
    assert second["price"] == Decimal(100) and second["size"] == Decimal(0)
    assert second["venue"] is None
    assert second["event_time"] == datetime(2026, 11, 22, 15, 30, 0, 500000, tzinfo=UTC)
    assert third["price"] == Decimal("0.000000000000000001")
    assert third["size"] == Decimal("99999999999999999999.999999999999999999")


def test_bad_tick_anywhere_in_a_batch_writes_nothing(
    client: httpx.Client, sql: Callable[..., list[Any]]
) -> None:
    ticks = [tick() for _ in range(50)] + [tick(event_time="0134-05-06T00:00:00Z")]
    r = client.post("/v1/ticks/batch", json={"ticks": ticks}, headers=idem())
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["ticks", 50, "event_time"]
    count = sql(
        "SELECT count(*) FROM market_ticks WHERE symbol = ANY($1::text[])",
        [t["symbol"] for t in ticks],
    )
    assert count[0][0] == 0


# --- idempotency ------------------------------------------------------------------------
def test_retry_with_same_key_and_body_replays_and_writes_once(
    client: httpx.Client, product: dict[str, Any], sql: Callable[..., list[Any]]
) -> None:
    headers = idem()
    body = review_body(product["sku"], body=f"once {uuid.uuid4()}")
    first = client.post("/v1/reviews", json=body, headers=headers)
    # Same JSON, different whitespace and key order: still the same request.
    raw = json.dumps(dict(reversed(body.items())), indent=2)
    second = client.post(
        "/v1/reviews", content=raw, headers={**headers, "Content-Type": "application/json"}
    )
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    assert sql("SELECT count(*) FROM reviews WHERE body = $1", body["body"])[0][0] == 1


def test_same_key_with_different_body_is_422(client: httpx.Client, product: dict[str, Any]) -> None:
    headers = idem()
    assert client.post("/v1/reviews", json=review_body(product["sku"]), headers=headers).is_success
    r = client.post("/v1/reviews", json=review_body(product["sku"], rating=5), headers=headers)
    assert r.status_code == 422
    assert "Idempotency-Key" in r.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/ticks/batch", {"ticks": [tick()]}),
        ("/v1/products", {"sku": "IDEM-P", "name": "n"}),
    ],
)
def test_batch_and_product_retries_are_idempotent(
    client: httpx.Client, sql: Callable[..., list[Any]], path: str, body: dict[str, Any]
) -> None:
    headers = idem()
    first = client.post(path, json=body, headers=headers)
    second = client.post(path, json=body, headers=headers)
    assert first.is_success and first.content == second.content
    if path == "/v1/ticks/batch":
        symbol = body["ticks"][0]["symbol"]
        assert sql("SELECT count(*) FROM market_ticks WHERE symbol = $1", symbol)[0][0] == 1


def test_post_without_idempotency_key_is_400(client: httpx.Client, product: dict[str, Any]) -> None:
    r = client.post("/v1/reviews", json=review_body(product["sku"]))
    assert r.status_code == 400


# --- authentication -------------------------------------------------------------------
def test_missing_or_wrong_key_is_401(ingest_api: str, product: dict[str, Any]) -> None:
    body = review_body(product["sku"])
    no_key = httpx.post(f"{ingest_api}/v1/reviews", json=body, headers=idem())
    wrong = httpx.post(
        f"{ingest_api}/v1/reviews", json=body, headers={**idem(), "X-API-Key": "pk_wrong"}
    )
    assert no_key.status_code == 401 and wrong.status_code == 401


def test_key_without_scope_is_403(
    ingest_api: str, create_key: Callable[..., str], product: dict[str, Any]
) -> None:
    reader = create_key("reviews:read")
    # A new key is seen at the next refresh, and an unknown key refreshes at most once a
    # second (keystore.py): right after the 401 test's miss, the first tries can be 401.
    deadline = time.monotonic() + 3
    while True:
        r = httpx.post(
            f"{ingest_api}/v1/reviews",
            json=review_body(product["sku"]),
            headers={**idem(), "X-API-Key": reader},
        )
        if r.status_code != 401 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert r.status_code == 403
    assert (
        httpx.get(
            f"{ingest_api}/v1/reviews/{uuid.uuid4()}", headers={"X-API-Key": reader}
        ).status_code
        == 404
    )


# --- bad input ------------------------------------------------------------------------
LONG = "x" * 5001


R = b'{"product_sku":"SKU","rating":%s,"body":"%s"%s}'
T = b'{"ticks":[{"symbol":"X","asset_class":"%s","price":%s,"size":"1","event_time":"%s"}]}'
Z = b"2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("case", "path", "content"),
    [
        ("malformed json", "/v1/reviews", b'{"product_sku": "A", "rating": '),
        ("rating 0", "/v1/reviews", R % (b"0", b"b", b"")),
        ("rating 6", "/v1/reviews", R % (b"6", b"b", b"")),
        ("rating as string", "/v1/reviews", R % (b'"5"', b"b", b"")),
        ("over-long body", "/v1/reviews", R % (b"1", LONG.encode(), b"")),
        ("unknown field id", "/v1/reviews", R % (b"1", b"b", b',"id":"x"')),
        ("unknown field created_at", "/v1/reviews", R % (b"1", b"b", b',"created_at":"%s"' % Z)),
        ("unknown field is_admin", "/v1/products", b'{"sku":"S","name":"n","is_admin":true}'),
        ("NUL byte", "/v1/reviews", R % (b"1", b"a\\u0000b", b"")),
        ("lone surrogate", "/v1/reviews", R % (b"1", b"a\\ud800b", b"")),
        ("raw invalid utf-8", "/v1/reviews", R % (b"1", b"a\xffb", b"")),
        ("NaN price", "/v1/ticks/batch", T % (b"crypto", b"NaN", Z)),
        ("NaN string price", "/v1/ticks/batch", T % (b"crypto", b'"NaN"', Z)),
        ("Infinity price", "/v1/ticks/batch", T % (b"crypto", b'"Infinity"', Z)),
        ("zero price", "/v1/ticks/batch", T % (b"crypto", b'"0"', Z)),
        ("negative price", "/v1/ticks/batch", T % (b"crypto", b'"-1.5"', Z)),
        ("float price", "/v1/ticks/batch", T % (b"crypto", b"1.5", Z)),
        ("naive timestamp", "/v1/ticks/batch", T % (b"crypto", b'"1"', b"2026-01-01T00:00:00")),
        ("bad asset class", "/v1/ticks/batch", T % (b"bond", b'"1"', Z)),
        ("year 134", "/v1/ticks/batch", T % (b"crypto", b'"1"', b"0134-01-01T00:00:00Z")),
        ("before 1970", "/v1/ticks/batch", T % (b"crypto", b'"1"', b"1969-12-31T23:59:59Z")),
        ("far future", "/v1/ticks/batch", T % (b"crypto", b'"1"', b"2999-01-01T00:00:00Z")),
        ("over-precise price", "/v1/ticks/batch", T % (b"crypto", b'"1.0000000000000000001"', Z)),
        ("empty batch", "/v1/ticks/batch", b'{"ticks":[]}'),
    ],
)
def test_bad_input_is_422(client: httpx.Client, case: str, path: str, content: bytes) -> None:
    r = client.post(path, content=content, headers={**idem(), "Content-Type": "application/json"})
    assert r.status_code == 422, (case, r.status_code, r.text)
    assert "detail" in r.json()


def test_too_many_batch_items_is_422(client: httpx.Client, product: dict[str, Any]) -> None:
    reviews = [review_body(product["sku"], body="b", title=None) for _ in range(1001)]
    r = client.post("/v1/reviews/batch", json={"reviews": reviews}, headers=idem())
    assert r.status_code == 422
    t = {"symbol": "X", "asset_class": "crypto", "price": "1", "size": "1",
         "event_time": "2026-01-01T00:00:00Z"}  # fmt: skip
    r = client.post("/v1/ticks/batch", json={"ticks": [t] * 10001}, headers=idem())
    assert r.status_code == 422


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(
    client: httpx.Client, product: dict[str, Any], ctype: str | None
) -> None:
    headers = idem()
    if ctype:
        headers["Content-Type"] = ctype
    r = client.post("/v1/reviews", content=b'{"product_sku":"x"}', headers=headers)
    assert r.status_code == 415


def _raw_post(url: str, headers: dict[str, str], chunks: list[bytes], *, chunked: bool) -> int:
    """A hand-written request, so the body can be streamed with or without Content-Length."""
    parts = urlsplit(url)
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    if chunked:
        head.append("Transfer-Encoding: chunked")
    else:
        head.append(f"Content-Length: {sum(len(c) for c in chunks)}")
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            for chunk in chunks:
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may answer 413 and close before the whole body is sent
        status_line = s.makefile("rb").readline()
    return int(status_line.split()[1])


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("target", ["nginx", "app"])
def test_oversized_body_is_413(
    ingest_api: str, app_url: str, api_key: str, target: str, chunked: bool
) -> None:
    base = ingest_api if target == "nginx" else app_url
    headers = {"X-API-Key": api_key, "Content-Type": "application/json", **idem()}
    chunks = [b'{"reviews":["' + b"a" * 65536] + [b"a" * 65536] * 40
    assert _raw_post(f"{base}/v1/reviews/batch", headers, chunks, chunked=chunked) == 413


async def test_concurrent_retries_with_one_key_write_one_row(
    ingest_api: str, api_key: str, product: dict[str, Any], stack_env: dict[str, str]
) -> None:
    """Coalesced inserts must not put one key twice in a statement: one row, same answer."""
    headers = {"X-API-Key": api_key, **idem()}
    body = review_body(product["sku"], body=f"concurrent {uuid.uuid4()}")
    async with httpx.AsyncClient(base_url=ingest_api, headers=headers, timeout=10) as client:
        answers = await asyncio.gather(*(client.post("/v1/reviews", json=body) for _ in range(20)))
    statuses = {a.status_code for a in answers}
    assert statuses <= {201, 409}, statuses
    assert len({a.content for a in answers if a.status_code == 201}) == 1
    conn = await asyncpg.connect(stack_env["DATABASE_URL"], timeout=10)
    try:
        count = await conn.fetchval("SELECT count(*) FROM reviews WHERE body = $1", body["body"])
    finally:
        await conn.close()
    assert count == 1
