"""ReviewFlow on plain dicts: scrubbing, pseudonyms, dedup, product join, orphans, alerts."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from cdc_fixtures import T0, envelope, golden, product_row, review_flow, review_row
from cdc_processor import decoding
from cdc_processor.decoding import ProductChange
from cdc_processor.enrichment import normalize_rating
from contracts import topics
from contracts.events import ReviewEnriched
from contracts.rows import ProductRow
from servicekit.clock import FakeClock


def _records(outputs: list, topic: str) -> list[dict]:
    return [orjson.loads(o.value) for o in outputs if o.topic == topic]


def _product(flow, product_id: int = 1, sku: str = "KTL-100") -> list:
    row = ProductRow.model_validate(product_row(product_id, sku))
    return flow.on_product(ProductChange(row, deleted=False))


def test_review_is_scrubbed_scored_pseudonymized_and_joined() -> None:
    flow = review_flow()
    _product(flow)
    review = decoding.decode_review_cdc(golden("review_insert"))
    outputs = flow.on_review(review)
    [record] = _records(outputs, topics.REVIEWS_ENRICHED.name)
    assert record["product_known"] is True and record["product_name"] == "Kettle"
    assert "jane@example.com" not in orjson.dumps(record).decode()
    assert "Jane" not in orjson.dumps(record).decode()
    assert record["body"] == "It leaks everywhere. Call me on [PHONE] or [EMAIL]"
    assert record["pii_counts"] == {"phone": 1, "email": 1}
    assert len(record["author_pseudonym"]) == 32
    assert record["language"] == "en"
    assert record["sentiment_label"] in {"negative", "neutral"}
    assert record["source_lsn"] == 23456784
    assert outputs[0].key == b"7d3f2b1e-9c4a-4b7e-8f21-0a6c5d4e3b21"


def test_same_author_gets_same_pseudonym_other_key_differs() -> None:
    flow = review_flow()
    first = flow.on_review(
        decoding.decode_review_cdc(
            envelope(
                "c",
                after=review_row(
                    "00000000-0000-4000-8000-000000000001", body="A first long review text here"
                ),
            )
        )
    )
    second = flow.on_review(
        decoding.decode_review_cdc(
            envelope(
                "c",
                after=review_row(
                    "00000000-0000-4000-8000-000000000002", body="A second long review text here"
                ),
            )
        )
    )
    a = _records(first, topics.REVIEWS_ENRICHED.name)[0]["author_pseudonym"]
    b = _records(second, topics.REVIEWS_ENRICHED.name)[0]["author_pseudonym"]
    assert a == b
    from cdc_fixtures import make_enricher

    other = make_enricher(b"other-key").pseudonym(
        decoding.decode_review_cdc(
            envelope("c", after=review_row("00000000-0000-4000-8000-000000000001"))
        )
    )
    assert other != a


def test_update_re_emits_under_same_key_and_delete_emits_delete_record() -> None:
    flow = review_flow()
    _product(flow)
    flow.on_review(decoding.decode_review_cdc(golden("review_insert")))
    updated = flow.on_review(decoding.decode_review_cdc(golden("review_update")))
    [record] = _records(updated, topics.REVIEWS_ENRICHED.name)
    assert record["op"] == "upsert" and record["rating"] == 4
    deleted = flow.on_review(decoding.decode_review_cdc(golden("review_delete")))
    [gone] = _records(deleted, topics.REVIEWS_ENRICHED.name)
    assert gone["op"] == "delete" and gone["body"] is None and gone["author_pseudonym"] is None
    assert deleted[0].key == b"7d3f2b1e-9c4a-4b7e-8f21-0a6c5d4e3b21"


def _crawl(body: str, external_id: str = "9") -> bytes:
    return orjson.dumps(
        {
            "source": "shopx",
            "external_id": external_id,
            "url": f"https://shopx.example/{external_id}",
            "product_sku": "KTL-100",
            "rating": 2,
            "body": body,
            "crawled_at": T0.isoformat(),
        }
    )


def _app_review(flow, n: int, body: str) -> list:
    review_id = f"00000000-0000-4000-8000-{n:012d}"
    return flow.on_review(
        decoding.decode_review_cdc(envelope("c", after=review_row(review_id, body=body)))
    )


def test_same_review_from_app_and_crawl_is_enriched_once() -> None:
    flow = review_flow()
    _product(flow)
    body = "The lid cracked after a week of normal use, very disappointing."
    app = _app_review(flow, 3, body)
    again = flow.on_review(decoding.decode_review_crawled(_crawl(body.upper())))
    assert len(_records(app, topics.REVIEWS_ENRICHED.name)) == 1
    assert again == []


def test_two_app_reviews_with_the_same_long_text_are_both_enriched() -> None:
    flow = review_flow()
    _product(flow)
    body = "The lid cracked after a week of normal use, very disappointing."
    first = _app_review(flow, 6, body)
    second = _app_review(flow, 7, body)
    assert len(_records(first, topics.REVIEWS_ENRICHED.name)) == 1
    assert len(_records(second, topics.REVIEWS_ENRICHED.name)) == 1


def test_short_identical_texts_are_not_merged() -> None:
    flow = review_flow()
    one = flow.on_review(
        decoding.decode_review_cdc(
            envelope("c", after=review_row("00000000-0000-4000-8000-000000000004", body="Great!"))
        )
    )
    two = flow.on_review(
        decoding.decode_review_cdc(
            envelope("c", after=review_row("00000000-0000-4000-8000-000000000005", body="Great!"))
        )
    )
    assert len(one) == 1 and len(two) == 1


def test_review_before_product_is_emitted_unknown_then_re_emitted_joined() -> None:
    flow = review_flow()
    early = flow.on_review(
        decoding.decode_review_cdc(
            envelope(
                "c",
                after=review_row(
                    "00000000-0000-4000-8000-000000000006",
                    product_id=7,
                    body="Arrived before the catalogue knew the product",
                ),
            )
        )
    )
    [first] = _records(early, topics.REVIEWS_ENRICHED.name)
    assert first["product_known"] is False and first["product_id"] == 7
    rejoined = _product(flow, 7, "BLD-7")
    [second] = _records(rejoined, topics.REVIEWS_ENRICHED.name)
    assert second["review_id"] == first["review_id"] and second["product_known"] is True
    assert second["product_sku"] == "BLD-7" and second["body"] == first["body"]
    assert _product(flow, 7, "BLD-7") == []  # re-emitted once


def test_negative_review_raises_alert_with_deterministic_id() -> None:
    flows = [review_flow(), review_flow()]
    ids = []
    for flow in flows:
        _product(flow)
        outputs = flow.on_review(decoding.decode_review_cdc(golden("review_insert")))
        [alert] = _records(outputs, topics.ALERTS.name)
        assert alert["kind"] == "negative_review" and alert["subject"] == "product:1"
        ids.append(alert["alert_id"])
    assert ids[0] == ids[1]


def test_burst_of_negative_reviews_alerts_once_per_burst() -> None:
    clock = FakeClock(T0)
    flow = review_flow(clock)
    _product(flow)

    def wave(n: int, *, wave_no: int, start: datetime, body: str) -> list[str]:
        """`n` one-star reviews a minute apart; the kinds of the alerts they raise."""
        kinds = []
        for i in range(n):
            row = review_row(
                f"00000000-0000-4000-8000-000000000{wave_no}0{i}",
                rating=1,
                body=body.format(i=i),
                at=start + timedelta(minutes=i),
            )
            outputs = flow.on_review(decoding.decode_review_cdc(envelope("c", after=row)))
            kinds += [a["kind"] for a in _records(outputs, topics.ALERTS.name)]
        return kinds

    kinds = wave(6, wave_no=1, start=T0, body="Broken again number {i}, awful")
    assert kinds.count("negative_review") == 6
    assert kinds.count("negative_burst") == 1
    # After a quiet hour, a new burst alerts again.
    later = T0 + timedelta(hours=2)
    kinds += wave(3, wave_no=2, start=later, body="Second wave complaint {i} here")
    assert kinds.count("negative_burst") == 2


def test_a_long_hot_burst_keeps_its_state_small_and_alerts_once() -> None:
    clock = FakeClock(T0)
    flow = review_flow(clock)
    _product(flow)
    bursts, sizes = 0, set()
    for i in range(300):
        row = review_row(
            str(uuid.UUID(int=0x500 + i)),
            rating=1,
            body=f"Broken on arrival, unit {i}, awful",
            at=T0 + timedelta(seconds=i),  # 300 negatives within the 10-minute window
        )
        outputs = flow.on_review(decoding.decode_review_cdc(envelope("c", after=row)))
        bursts += sum(a["kind"] == "negative_burst" for a in _records(outputs, topics.ALERTS.name))
        sizes.add(len(flow.bursts["product:1"]["reviews"]))
    assert bursts == 1
    assert max(sizes) == 3  # the threshold, not the 300 reviews in the window


def test_redelivered_negative_review_counts_once_in_burst() -> None:
    flow = review_flow()
    _product(flow)
    value = envelope(
        "c",
        after=review_row(
            "00000000-0000-4000-8000-000000000301", rating=1, body="Terrible, broke at once."
        ),
    )
    bursts = []
    for _ in range(5):
        outputs = flow.on_review(decoding.decode_review_cdc(value))
        bursts += [
            a for a in _records(outputs, topics.ALERTS.name) if a["kind"] == "negative_burst"
        ]
    assert bursts == []


def test_rating_normalization() -> None:
    ratings = ("0.2", "1", "1.72", "2.5", "3.49", "4.5", "7")
    assert [normalize_rating(Decimal(r)) for r in ratings] == [1, 1, 2, 3, 3, 5, 5]
    assert normalize_rating(None) is None


def test_french_text_language_detected_without_locale() -> None:
    flow = review_flow()
    row = review_row(
        "00000000-0000-4000-8000-000000000401",
        locale=None,
        body="La bouilloire est très bruyante et le couvercle ne ferme pas bien.",
    )
    [record] = _records(
        flow.on_review(decoding.decode_review_cdc(envelope("c", after=row))),
        topics.REVIEWS_ENRICHED.name,
    )
    assert record["language"] == "fr"


def test_dedup_claims_expire_after_the_ttl_and_the_sweep_deletes_them_oldest_first() -> None:
    clock = FakeClock(T0)
    flow = review_flow(clock)
    flow.dedup_ttl_s = timedelta(days=30).total_seconds()
    _product(flow)
    old_body = "The lid cracked after a week of normal use, very disappointing."
    _app_review(flow, 21, old_body)
    clock.advance(timedelta(days=20))
    young_body = "Boils quickly and quietly, the handle stays cool, lovely kettle."
    _app_review(flow, 22, young_body)
    assert len(flow.dedup) == 2
    assert flow.sweep_dedup(limit=100) == 0  # nothing is 30 days old yet

    clock.advance(timedelta(days=11))  # the first claim is 31 days old, the second 11
    # An expired claim no longer merges: the crawl of the old text is enriched again.
    assert _records(
        flow.on_review(decoding.decode_review_crawled(_crawl(old_body))),
        topics.REVIEWS_ENRICHED.name,
    )
    # The live claim still does.
    assert flow.on_review(decoding.decode_review_crawled(_crawl(young_body, "10"))) == []
    removed = flow.sweep_dedup(limit=100)
    # The first key was re-claimed by the crawl just now, so nothing expired yet.
    assert removed == 0 and len(flow.dedup) == 2

    clock.advance(timedelta(days=25))  # the second claim is 36 days old, the re-claim 25
    assert flow.sweep_dedup(limit=100) == 1
    assert len(flow.dedup) == 1
    clock.advance(timedelta(days=6))
    assert flow.sweep_dedup(limit=100) == 1
    assert flow.dedup == {}


def test_dedup_sweep_honours_its_limit_and_dates_claims_written_before_expiry_existed() -> None:
    clock = FakeClock(T0)
    flow = review_flow(clock)
    _product(flow)
    flow.dedup.update({f"legacy-{n}": f"review-{n}" for n in range(3)})
    for n in range(5):
        _app_review(flow, 30 + n, f"A long enough review text number {n} about the kettle lid.")
    assert flow.sweep_dedup(limit=100) == 0  # undated claims get a date; none expired
    assert all(isinstance(v, dict) for v in flow.dedup.values())
    clock.advance(timedelta(days=31))
    assert flow.sweep_dedup(limit=2) == 2
    assert len(flow.dedup) == 6
    assert flow.sweep_dedup(limit=100) == 6
    assert flow.dedup == {}


class _CountingTable(dict[str, Any]):
    """A table that counts value reads (a Faust table's reads each cost a lookup and hooks)."""

    reads = 0

    def __getitem__(self, key: str) -> Any:
        self.reads += 1
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)

    def items(self) -> Any:  # as a Mapping's items(): one read per key
        return [(key, self[key]) for key in self]


def test_first_sweep_after_a_start_reads_keys_not_every_claim() -> None:
    clock = FakeClock(T0)
    flow = review_flow(clock)
    table = _CountingTable(
        {f"claim-{n}": {"id": f"r{n}", "at": T0.timestamp()} for n in range(20_000)}
    )
    flow.dedup = table
    assert flow.sweep_dedup(limit=100) == 0  # none expired: stops at the first young claim
    assert table.reads <= 2
    clock.advance(timedelta(days=31))
    assert flow.sweep_dedup(limit=100) == 100 and len(table) == 19_900


def _crawled_with_scale(value: str, *, worst: str, best: str, exact: str) -> bytes:
    """A crawled review as the crawler now writes it: the float, the exact value, the scale."""
    return orjson.dumps(
        {
            "source": "shopx",
            "external_id": f"scale-{value}",
            "url": "https://shopx.example/scale",
            "product_sku": "KTL-100",
            "rating": float(exact),
            "rating_exact": exact,
            "rating_source_value": value,
            "rating_source_worst": worst,
            "rating_source_best": best,
            "body": "The lid cracked within a week of normal use.",
            "crawled_at": T0.isoformat(),
        }
    )


def test_crawled_rating_on_ten_point_scale_keeps_exact_value_and_scale() -> None:
    flow = review_flow()
    outputs = flow.on_review(
        decoding.decode_review_crawled(
            _crawled_with_scale("1.8", worst="0", best="10", exact="1.72")
        )
    )
    [record] = _records(outputs, topics.REVIEWS_ENRICHED.name)
    assert record["rating_exact"] == "1.72"  # a decimal string on the wire, never a float
    assert record["rating_source_value"] == "1.8"
    assert (record["rating_source_worst"], record["rating_source_best"]) == ("0", "10")
    assert record["rating"] == 2  # whole stars stay for the views that need them
    enriched = ReviewEnriched.model_validate(record)
    assert enriched.rating_exact == Decimal("1.72")


def test_crawled_1_8_normalized_is_not_rounded_to_2() -> None:
    flow = review_flow()
    outputs = flow.on_review(
        decoding.decode_review_crawled(_crawled_with_scale("2", worst="0", best="10", exact="1.8"))
    )
    [record] = _records(outputs, topics.REVIEWS_ENRICHED.name)
    assert record["rating_exact"] == "1.8" and record["rating"] == 2


def test_crawled_record_from_before_the_exact_fields_keeps_its_float_exactly() -> None:
    flow = review_flow()
    old = orjson.loads(_crawl("An older crawled review without the exact rating fields"))
    old["rating"] = 1.8
    outputs = flow.on_review(decoding.decode_review_crawled(orjson.dumps(old)))
    [record] = _records(outputs, topics.REVIEWS_ENRICHED.name)
    assert record["rating_exact"] == "1.8" and record["rating"] == 2
    assert record["rating_source_value"] is None and record["rating_source_best"] is None


def test_app_review_stars_give_the_same_exact_value_on_one_to_five() -> None:
    flow = review_flow()
    _product(flow)
    outputs = flow.on_review(decoding.decode_review_cdc(golden("review_update")))
    [record] = _records(outputs, topics.REVIEWS_ENRICHED.name)
    assert record["rating"] == 4 and record["rating_exact"] == "4"
    assert record["rating_source_value"] == "4"
    assert (record["rating_source_worst"], record["rating_source_best"]) == ("1", "5")
