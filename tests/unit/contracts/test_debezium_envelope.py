import orjson
import pytest
from contracts.debezium import EnvelopeError, Op, decode_change_event, decode_change_key
from contracts.rows import MarketTickRow, ReviewRow

SOURCE = {"ts_ms": 1763830800000, "snapshot": "false", "schema": "public", "table": "x", "lsn": 42}
REVIEW = {
    "id": "6f1c1f7e-3a8b-4d8e-9d3e-7c1a2b3c4d5e",
    "product_id": 7,
    "rating": 2,
    "title": "Leaks",
    "body": "It leaks.",
    "author_name": "Jane Doe",
    "author_email": "jane@example.com",
    "locale": "en",
    "source": "app",
    "external_id": None,
    "created_at": "2026-11-22T17:00:00.123456Z",
    "updated_at": "2026-11-22T17:00:00.123456Z",
}


def envelope(op: str, before: object = None, after: object = None, *, schemas: bool) -> bytes:
    payload = {"op": op, "before": before, "after": after, "source": SOURCE, "ts_ms": 1}
    if schemas:
        return orjson.dumps({"schema": {"type": "struct"}, "payload": payload})
    return orjson.dumps(payload)


@pytest.mark.parametrize("schemas", [True, False])
def test_insert_update_delete_and_snapshot_decode_with_and_without_schemas(schemas: bool) -> None:
    created = decode_change_event(envelope("c", after=REVIEW, schemas=schemas))
    assert created is not None and created.op is Op.CREATE
    assert created.row(ReviewRow).rating == 2
    assert created.source.snapshot == "false" and created.source.lsn == 42

    updated = decode_change_event(envelope("u", REVIEW, {**REVIEW, "rating": 4}, schemas=schemas))
    assert updated is not None
    assert updated.row(ReviewRow).rating == 4
    before = updated.before_row(ReviewRow)
    assert before is not None and before.rating == 2

    deleted = decode_change_event(envelope("d", before=REVIEW, schemas=schemas))
    assert deleted is not None and deleted.op is Op.DELETE
    assert str(deleted.row(ReviewRow).id) == REVIEW["id"]

    snap = decode_change_event(envelope("r", after=REVIEW, schemas=schemas))
    assert snap is not None and snap.is_snapshot


def test_tombstone_decodes_to_none() -> None:
    assert decode_change_event(None) is None
    assert decode_change_event(b"") is None


def test_truncate_has_no_row_image() -> None:
    event = decode_change_event(envelope("t", schemas=False))
    assert event is not None and event.op is Op.TRUNCATE
    with pytest.raises(EnvelopeError, match="no row image"):
        event.row(ReviewRow)


def test_decimal_strings_stay_exact() -> None:
    tick = {
        "id": 1,
        "symbol": "BTC-USD",
        "asset_class": "crypto",
        "price": "67012.500000000000000001",
        "size": "0.25",
        "event_time": "2026-11-22T17:00:00Z",
    }
    event = decode_change_event(envelope("c", after=tick, schemas=False))
    assert event is not None
    assert str(event.row(MarketTickRow).price) == "67012.500000000000000001"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "undecodable"),
        (b"[1, 2]", "schema_invalid"),
        (orjson.dumps({"op": "x", "source": SOURCE}), "schema_invalid"),
        (orjson.dumps({"op": "c", "after": None, "source": SOURCE}), "schema_invalid"),
    ],
)
def test_malformed_envelopes_raise_with_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode_change_event(raw)
    assert info.value.reason == reason


def test_row_that_breaks_the_contract_is_schema_invalid() -> None:
    event = decode_change_event(envelope("c", after={**REVIEW, "rating": 9}, schemas=False))
    assert event is not None
    with pytest.raises(EnvelopeError, match="rating"):
        event.row(ReviewRow)


def test_key_decodes_with_and_without_schema() -> None:
    assert decode_change_key(b'{"id": 5}') == {"id": 5}
    assert decode_change_key(b'{"schema": {}, "payload": {"id": 5}}') == {"id": 5}
    assert decode_change_key(None) is None
