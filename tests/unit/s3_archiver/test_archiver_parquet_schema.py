"""Parquet schemas from the contracts: exact decimals, UTC timestamps, maps, evolution, DLQ."""

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pytest
from contracts import datasets
from contracts.events import AlertRaised, CandleClosed, ReviewEnriched
from s3_archiver import catalog, encoding
from s3_archiver.archiver import Rejected, decode, routes_for
from s3_archiver.main import generate_athena
from s3_archiver.parquet_schema import (
    DECIMAL_TYPE,
    TIMESTAMP_TYPE,
    is_compatible_evolution,
    schema_for,
)

REPO = Path(__file__).resolve().parents[3]
WHEN = datetime(2026, 11, 22, 17, 0, 0, 123456, tzinfo=UTC)


def candle(**over: object) -> CandleClosed:
    fields: dict[str, object] = dict(
        symbol="BTC-USD",
        asset_class="crypto",
        window_start=WHEN,
        window_end=WHEN,
        open="67012.500000000000000001",
        high="99999999999999999999.999999999999999999",
        low="0.000000000000000001",
        close="-12.5",
        volume="0",
        vwap="67012.5",
        trade_count=3,
        sma=None,
        sma_period=20,
        ema="1.1",
        ema_period=12,
        event_time=WHEN,
        emitted_at=WHEN,
    )
    fields.update(over)
    return CandleClosed.model_validate(fields)


def test_candle_schema_has_exact_decimals_utc_times_and_archive_columns() -> None:
    schema = schema_for(CandleClosed).schema
    assert schema.field("open").type == DECIMAL_TYPE == pa.decimal128(38, 18)
    assert schema.field("event_time").type == TIMESTAMP_TYPE
    assert str(TIMESTAMP_TYPE) == "timestamp[us, tz=UTC]"
    assert schema.field("sma").nullable and not schema.field("symbol").nullable
    assert schema.names[-4:] == ["_topic", "_partition", "_offset", "_archived_at"]


def test_dict_fields_are_maps() -> None:
    assert schema_for(ReviewEnriched).schema.field("pii_counts").type == pa.map_(
        pa.string(), pa.int64()
    )
    assert schema_for(AlertRaised).schema.field("details").type == pa.map_(pa.string(), pa.string())


def test_parquet_round_trips_decimals_and_times_exactly() -> None:
    events = [candle(), candle(close="0.1", sma="3.333333333333333333")]
    table = encoding.to_table(
        schema_for(CandleClosed),
        events,
        topic="market.candles.v1",
        partition=1,
        offsets=[10, 11],
        archived_at=WHEN,
    )
    data = encoding.to_parquet(table)
    back = encoding.read_parquet(data).to_pylist()
    assert back[0]["open"] == Decimal("67012.500000000000000001")
    assert back[0]["high"] == Decimal("99999999999999999999.999999999999999999")
    assert back[0]["low"] == Decimal("0.000000000000000001")
    assert back[0]["close"] == Decimal("-12.5")
    assert back[1]["sma"] == Decimal("3.333333333333333333") and back[0]["sma"] is None
    assert back[0]["event_time"] == WHEN and back[0]["event_time"].tzinfo is not None
    assert (back[1]["_topic"], back[1]["_partition"], back[1]["_offset"]) == (
        "market.candles.v1",
        1,
        11,
    )
    assert encoding.read_parquet(data).schema.field("open").type == DECIMAL_TYPE


def test_same_rows_encode_to_the_same_bytes() -> None:
    events = [candle(), candle(close="2")]

    def enc() -> bytes:
        return encoding.to_parquet(
            encoding.to_table(
                schema_for(CandleClosed),
                events,
                topic="t",
                partition=0,
                offsets=[0, 1],
                archived_at=WHEN,
            )
        )

    assert enc() == enc()


class CandleClosedV2(CandleClosed):
    exchange: str | None = None  # a compatible change: a new optional field


def test_adding_an_optional_field_is_a_compatible_evolution(tmp_path: Path) -> None:
    old, new = schema_for(CandleClosed), schema_for(CandleClosedV2)
    assert is_compatible_evolution(old.schema, new.schema) == (True, "ok")
    assert not is_compatible_evolution(new.schema, old.schema)[0]  # a removed column
    folder = tmp_path / "market_candles" / "dt=2026-11-22" / "hour=17"
    folder.mkdir(parents=True)
    (folder / "a.parquet").write_bytes(
        encoding.to_parquet(
            encoding.to_table(
                old, [candle()], topic="t", partition=0, offsets=[0], archived_at=WHEN
            )
        )
    )
    v2 = CandleClosedV2.model_validate({**candle().model_dump(), "exchange": "demo"})
    (folder / "b.parquet").write_bytes(
        encoding.to_parquet(
            encoding.to_table(new, [v2], topic="t", partition=0, offsets=[1], archived_at=WHEN)
        )
    )
    rows = duckdb.sql(
        "SELECT _offset, exchange, open, hour FROM read_parquet("
        f"'{tmp_path}/market_candles/*/*/*.parquet', hive_partitioning = true, "
        "union_by_name = true) ORDER BY _offset"
    ).fetchall()
    assert rows == [
        (0, None, Decimal("67012.500000000000000001"), 17),
        (1, "demo", Decimal("67012.500000000000000001"), 17),
    ]


def test_incompatible_or_undecodable_events_are_rejected_with_a_reason() -> None:
    route = routes_for({"c": datasets.MARKET_CANDLES})["c"]
    ok = decode(route, candle().model_dump_json().encode())
    assert isinstance(ok, CandleClosed)
    float_price = candle().model_dump(mode="json") | {"open": 1.5}
    import orjson

    bad = decode(route, orjson.dumps(float_price))
    assert isinstance(bad, Rejected) and bad.reason == "schema_invalid" and "open" in bad.detail
    assert decode(route, b"{not json") == Rejected(
        "undecodable", decode(route, b"{not json").detail
    )  # type: ignore[union-attr]
    assert isinstance(decode(route, None), Rejected)


def test_committed_athena_ddl_is_what_the_generator_writes(tmp_path: Path) -> None:
    for generated in generate_athena(tmp_path):
        committed = REPO / "deploy" / "athena" / generated.name
        assert committed.read_text() == generated.read_text(), (
            f"{committed} is stale: run `uv run python -m s3_archiver athena-ddl`"
        )


def test_athena_ddl_uses_partition_projection() -> None:
    ddl = catalog.athena_ddl(datasets.REVIEWS_ENRICHED, bucket="b")
    for needle in (
        "'projection.enabled'='true'",
        "'projection.dt.type'='date'",
        "'projection.hour.type'='integer'",
        "'storage.location.template'='s3://b/archive/reviews_enriched/dt=${dt}/hour=${hour}/'",
        "PARTITIONED BY (`dt` string, `hour` int)",
        "`pii_counts` map<string,bigint>",
        "`_offset` bigint",
    ):
        assert needle in ddl


@pytest.mark.parametrize("dataset", datasets.ALL, ids=lambda d: d.name)
def test_catalog_document_lists_columns_and_partition_keys(dataset: datasets.Dataset) -> None:
    doc = catalog.catalog_document(dataset, bucket="b")
    names = [c["name"] for c in doc["columns"]]
    assert dataset.event_time_field in names and names[-4:] == list(datasets.ARCHIVE_COLUMNS)
    assert [k["name"] for k in doc["partition_keys"]] == list(datasets.PARTITION_KEYS)
    assert doc["location"] == f"s3://b/archive/{dataset.name}/"


def test_arrow_batch_path_writes_the_same_bytes_as_the_model_path() -> None:
    events = [candle(), candle(close="0.1", sma="3.333333333333333333", open="1E+2")]
    values = [e.model_dump_json().encode() for e in events]
    values.append(
        orjson.dumps(
            candle().model_dump(mode="json") | {"event_time": "2026-11-22T18:00:00.123456+01:00"}
        )
    )
    events.append(CandleClosed.model_validate_json(values[-1]))
    schema = schema_for(CandleClosed)
    validator = routes_for({"t": datasets.MARKET_CANDLES})["t"].batch
    assert validator is not None
    parsed = validator.parse(values)
    assert parsed is not None
    kwargs = dict(topic="t", partition=0, archived_at=WHEN)
    fast = encoding.assemble(
        schema,
        [encoding.with_offsets(parsed.table, [1, 2, 3])],
        **kwargs,  # type: ignore[arg-type]
    )
    slow = encoding.to_table(schema, events, offsets=[1, 2, 3], **kwargs)  # type: ignore[arg-type]
    assert fast.equals(slow)
    assert encoding.to_parquet(fast) == encoding.to_parquet(slow)


def test_an_objects_bytes_do_not_depend_on_how_its_rows_were_batched() -> None:
    """After a restart, fetches split the log differently: the object must not change."""
    schema = schema_for(CandleClosed)
    events = [candle(close=f"{i}.5", sma=None if i % 2 else "1") for i in range(9)]
    tables = [
        encoding.with_offsets(encoding.event_table(schema, events[lo:hi]), range(lo, hi))
        for lo, hi in ((0, 2), (2, 3), (3, 9))
    ]
    kwargs = dict(topic="t", partition=0, archived_at=WHEN)
    chunked = encoding.assemble(schema, tables, **kwargs)  # type: ignore[arg-type]
    whole = encoding.to_table(schema, events, offsets=range(9), **kwargs)  # type: ignore[arg-type]
    assert encoding.to_parquet(chunked) == encoding.to_parquet(whole)


def test_maps_take_the_model_path() -> None:
    schema = schema_for(ReviewEnriched)
    assert not schema.json_readable
    assert routes_for({"r": datasets.REVIEWS_ENRICHED})["r"].batch is None
    review = ReviewEnriched.model_validate(
        {
            "review_id": "r",
            "op": "upsert",
            "source": "app",
            "dedup_key": "d",
            "pii_counts": {"email": 2},
            "event_time": WHEN,
            "enriched_at": WHEN,
        }
    )
    table = encoding.to_table(
        schema, [review], topic="t", partition=0, offsets=[0], archived_at=WHEN
    )
    assert table.to_pylist()[0]["pii_counts"] == [("email", 2)]
