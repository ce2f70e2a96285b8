"""Golden Debezium fixtures through the decoders: every op, schemas on/off, bad input."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from cdc_fixtures import envelope, golden, golden_doc
from cdc_processor import decoding
from cdc_processor.decoding import DecodeError


def test_insert_decodes_review_with_lsn_and_utc_time() -> None:
    review = decoding.decode_review_cdc(golden("review_insert"))
    assert review is not None
    assert review.review_id == "7d3f2b1e-9c4a-4b7e-8f21-0a6c5d4e3b21"
    assert review.source_lsn == 23456784
    assert review.rating == 2 and review.author_email == "jane@example.com"
    assert review.event_time == datetime(2026, 11, 22, 17, 0, 0, 123456, tzinfo=UTC)
    assert not review.deleted


def test_update_uses_after_image() -> None:
    review = decoding.decode_review_cdc(golden("review_update"))
    assert review is not None and review.rating == 4 and review.title == "Fixed"
    assert review.event_time == datetime(2026, 11, 22, 18, 30, tzinfo=UTC)


def test_delete_keeps_id_from_before_image() -> None:
    review = decoding.decode_review_cdc(golden("review_delete"))
    assert review is not None and review.deleted
    assert review.review_id == "7d3f2b1e-9c4a-4b7e-8f21-0a6c5d4e3b21"
    assert review.source_lsn == 23470000


@pytest.mark.parametrize("value", [None, b""])
def test_tombstone_after_delete_is_skipped(value: bytes | None) -> None:
    assert decoding.decode_review_cdc(value) is None
    assert decoding.decode_product(value) is None
    assert decoding.decode_tick_cdc(value) is None


def test_schema_wrapped_tombstone_is_skipped() -> None:
    assert decoding.decode_review_cdc(b'{"schema": null, "payload": null}') is None


def test_snapshot_read_decodes_like_insert_with_unicode_intact() -> None:
    review = decoding.decode_review_cdc(golden("review_snapshot"))
    assert review is not None and review.author_name == "Élodie Müller"
    assert review.body.endswith("Ça chauffe vite ☕")


def test_truncate_is_skipped() -> None:
    assert decoding.decode_review_cdc(golden("truncate")) is None


def test_schemas_enabled_envelope_is_unwrapped_and_offset_time_normalized() -> None:
    review = decoding.decode_review_cdc(golden("review_insert_with_schema"))
    assert review is not None and review.locale == "de"
    assert review.event_time == datetime(2026, 11, 22, 11, 0, tzinfo=UTC)


def test_schemas_on_and_off_decode_the_same_row() -> None:
    plain = golden_doc("review_insert")
    wrapped = orjson.dumps({"schema": {"type": "struct"}, "payload": plain})
    assert decoding.decode_review_cdc(wrapped) == decoding.decode_review_cdc(orjson.dumps(plain))


@pytest.mark.parametrize("name", ["review_insert", "review_update", "review_snapshot"])
def test_one_pass_review_decode_equals_the_general_path(name: str) -> None:
    value = golden(name)
    # the one-pass path is the one taken
    assert decoding._upsert(decoding._REVIEW_UPSERT, value) is not None
    change = decoding._change(value)
    assert change is not None
    general = decoding._review_input(
        decoding._row(change, decoding.ReviewRow), lsn=change.source.lsn
    )
    assert decoding.decode_review_cdc(value) == general


def test_one_pass_tick_decode_equals_the_general_path() -> None:
    value = golden("tick_insert")
    # the one-pass path is the one taken
    assert decoding._upsert(decoding._TICK_UPSERT, value) is not None
    change = decoding._change(value)
    assert change is not None
    general = decoding._tick(decoding._row(change, decoding.MarketTickRow))
    assert decoding.decode_tick_cdc(value) == general
    document = golden_doc("tick_insert")
    document["after"]["price"] = 67012.5  # a float: the general path's schema_invalid
    assert decoding._upsert(decoding._TICK_UPSERT, orjson.dumps(document)) is None
    with pytest.raises(DecodeError) as raised:
        decoding.decode_tick_cdc(orjson.dumps(document))
    assert raised.value.reason == "schema_invalid"
    document = golden_doc("tick_insert")
    document["op"] = "d"
    assert decoding._upsert(decoding._TICK_UPSERT, orjson.dumps(document)) is None


@pytest.mark.parametrize("name", ["review_delete", "review_insert_with_schema", "truncate"])
def test_other_envelopes_take_the_general_path(name: str) -> None:
    assert decoding._upsert(decoding._REVIEW_UPSERT, golden(name)) is None


def test_decimal_strings_stay_exact() -> None:
    tick = decoding.decode_tick_cdc(golden("tick_insert"))
    assert tick is not None
    assert tick.price == Decimal("67012.500000000000000001")
    assert tick.size == Decimal("0.25")
    assert tick.tick_id == "db:1001"


def test_numeric_as_float_is_schema_invalid() -> None:
    doc = golden_doc("tick_insert")
    doc["after"]["price"] = 67012.5
    with pytest.raises(DecodeError) as caught:
        decoding.decode_tick_cdc(orjson.dumps(doc))
    assert caught.value.reason == "schema_invalid"


def test_malformed_json_is_undecodable() -> None:
    with pytest.raises(DecodeError) as caught:
        decoding.decode_review_cdc(b'{"op": "c", "after": {')
    assert caught.value.reason == "undecodable"


def test_row_that_breaks_the_contract_is_schema_invalid() -> None:
    with pytest.raises(DecodeError) as caught:
        decoding.decode_review_cdc(golden("review_schema_invalid"))
    assert caught.value.reason == "schema_invalid"


def test_oversized_value_is_rejected_without_parsing() -> None:
    huge = envelope("c", after={"body": "x" * (decoding.MAX_VALUE_BYTES + 1)})
    with pytest.raises(DecodeError) as caught:
        decoding.decode_review_cdc(huge)
    assert caught.value.reason == "oversized"


def test_large_but_allowed_body_decodes() -> None:
    doc = golden_doc("review_insert")
    doc["after"]["body"] = "Long review. " * 20_000
    review = decoding.decode_review_cdc(orjson.dumps(doc))
    assert review is not None and len(review.body) == 13 * 20_000


def test_product_insert_decodes() -> None:
    change = decoding.decode_product(golden("product_insert"))
    assert change is not None and change.product.sku == "KTL-100" and not change.deleted


def test_crawled_review_gets_crawl_id_and_source() -> None:
    value = orjson.dumps(
        {
            "source": "shopx",
            "external_id": "r-9",
            "url": "https://shopx.example/r/9",
            "product_sku": "KTL-100",
            "rating": 3.5,
            "body": "Fine.",
            "crawled_at": "2026-11-22T17:00:00Z",
        }
    )
    review = decoding.decode_review_crawled(value)
    assert review is not None
    assert review.review_id == "crawl:shopx:r-9" and review.source == "crawl:shopx"
    assert review.product_sku == "KTL-100" and review.rating == 3.5


def test_quote_decodes_and_repartition_round_trips_with_source() -> None:
    value = orjson.dumps(
        {
            "symbol": "AAPL",
            "asset_class": "equity",
            "price": "189.12",
            "size": "10",
            "event_time": "2026-11-22T17:00:01Z",
            "source": "feed",
            "polled_at": "2026-11-22T17:00:02Z",
        }
    )
    tick = decoding.decode_quote(value)
    assert tick is not None
    encoded = decoding.tick_to_json(tick, source=("pulse.public.market_ticks", 2, 41))
    assert decoding.tick_from_json(encoded) == (tick, ("pulse.public.market_ticks", 2, 41))
