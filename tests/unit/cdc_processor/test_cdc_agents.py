"""Each agent in in-memory Faust (`test_context`, memory:// store); outbound sends mocked."""

from __future__ import annotations

import asyncio
import base64
import uuid
import weakref
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from unittest.mock import AsyncMock, MagicMock

import orjson
import pytest
from cdc_fixtures import T0, envelope, golden, product_row, quote, review_row, tick_row
from cdc_processor import agents
from cdc_processor.app import Processor, create_app
from cdc_processor.pipeline import Output
from cdc_processor.settings import CdcSettings
from cdc_processor.writeback import ChangelogRecord
from contracts import topics
from servicekit.clock import FakeClock
from servicekit.settings import KafkaSettings


def delivered(*_args: Any) -> asyncio.Future[None]:
    future = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def make_processor(**overrides: Any) -> Processor:
    settings = CdcSettings(
        **{
            "app_id": f"cdc-unit-{uuid.uuid4().hex[:8]}",
            "http_port": 0,
            "candle_grace_s": 5,
            "sma_period": 2,
            "ema_period": 2,
            "batch_max": 1,  # test_context stops the agent before a take_events batch would flush
            **overrides,
        }
    )
    p = create_app(
        settings, KafkaSettings(kafka_bootstrap_servers="127.0.0.1:1"), clock=FakeClock(T0)
    )
    app = p.app
    app.loop = asyncio.get_running_loop()
    app.finalize()
    app.conf.store = "memory://"
    app.flow_control.resume()
    for topic in p.topics.values():
        topic.send = AsyncMock()
    # Agents publish here; each send hands back its delivery, already done.
    app.producer.send = AsyncMock(side_effect=delivered)  # type: ignore[method-assign]
    for table in app.tables.values():
        table.send_changelog = MagicMock()  # type: ignore[method-assign]
    return p


@pytest.fixture
async def processor() -> AsyncIterator[Processor]:
    yield make_processor()


def sent(p: Processor, topic: str) -> list[tuple[bytes | None, dict[str, Any]]]:
    calls = p.app.producer.send.call_args_list  # type: ignore[attr-defined]
    name = p.topics[topic].get_topic_name()
    return [(c.args[1], orjson.loads(c.args[2])) for c in calls if c.args[0] == name]


PUMPED: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()  # send mock → pumped


async def pump(p: Processor) -> list[tuple[str, bytes, int]]:
    """Deliver what the agents sent to the review-side repartition topics to the agents
    reading them, on the key's partition, until nothing new is sent; (route, key,
    partition) of each delivery, in order."""
    routes = {
        p.reviews_by_product.get_topic_name(): "reviews-by-product",
        p.products_by_product.get_topic_name(): "products-by-product",
    }
    delivered: list[tuple[str, bytes, int]] = []
    send: Any = p.app.producer.send
    while True:
        done = PUMPED.get(send, 0)  # the sends before it were delivered by an earlier pump
        calls = send.call_args_list[done:]
        PUMPED[send] = done + len(calls)
        routed = [c.args for c in calls if c.args[0] in routes]
        if not routed:
            return delivered
        for topic, key, value, _partition, _timestamp, headers, *_ in routed:
            route = routes[topic]
            async with p.app.agents[route].test_context() as agent:
                await agent.put(value, key=key, partition=agents.partition_of(key), headers=headers)
            delivered.append((route, key, agents.partition_of(key)))


async def test_products_and_reviews_agents_join_and_emit(processor: Processor) -> None:
    p = processor
    async with p.app.agents["products"].test_context() as products:
        await products.put(
            envelope("c", after=product_row(1, "KTL-100"), table="products"), key=b'{"id":1}'
        )
    async with p.app.agents["reviews-cdc"].test_context() as reviews:
        await reviews.put(golden("review_insert"), key=b"k", partition=1)
    assert sent(p, topics.REVIEWS_ENRICHED.name) == []  # repartitioned first
    hops = await pump(p)
    # The product under its id and its SKU; the review to its product id's partition, where
    # it finds the product and moves on to its SKU's, where it is enriched.
    assert [(route, key) for route, key, _p in hops] == [
        ("products-by-product", b"id:1"),
        ("products-by-product", b"sku:KTL-100"),
        ("reviews-by-product", b"id:1"),
        ("reviews-by-product", b"sku:KTL-100"),
    ]
    [(key, record)] = sent(p, topics.REVIEWS_ENRICHED.name)
    assert key == b"7d3f2b1e-9c4a-4b7e-8f21-0a6c5d4e3b21"
    assert record["product_known"] and record["product_sku"] == "KTL-100"
    assert [a["kind"] for _k, a in sent(p, topics.ALERTS.name)] == ["negative_review"]
    assert p.reviews.products["id:1"]["name"] == "Kettle"  # table written


def _crawled(body: str, *, sku: str = "KTL-100") -> bytes:
    return orjson.dumps(
        {
            "source": "shopx",
            "external_id": "9",
            "url": "https://shopx.example/9",
            "product_sku": sku,
            "rating": 2,
            "body": body,
            "crawled_at": T0.isoformat(),
        }
    )


async def test_app_and_crawled_copies_of_a_review_meet_in_the_skus_partition(
    processor: Processor,
) -> None:
    # Keyed by product id, the app review and the crawl (SKU only) would sit in different
    # partitions and text dedup across sources would silently stop; both end in the SKU's.
    p = processor
    body = "The lid cracked after a week of normal use, very disappointing."
    async with p.app.agents["products"].test_context() as products:
        await products.put(
            envelope("c", after=product_row(1, "KTL-100"), table="products"), key=b'{"id":1}'
        )
    async with p.app.agents["reviews-cdc"].test_context() as reviews:
        await reviews.put(
            envelope("c", after=review_row("00000000-0000-4000-8000-000000000003", body=body)),
            key=b"k",
        )
    hops = await pump(p)
    async with p.app.agents["reviews-crawled"].test_context() as crawled:
        await crawled.put(_crawled(body.upper()), key=b"shopx:9")
    hops += await pump(p)
    enriched_at = {key for route, key, _p in hops if route == "reviews-by-product"}
    assert enriched_at == {b"id:1", b"sku:KTL-100"}
    [(key, record)] = sent(p, topics.REVIEWS_ENRICHED.name)  # the crawl: a duplicate
    assert key == b"00000000-0000-4000-8000-000000000003" and record["product_known"]


async def test_review_before_its_product_waits_in_its_id_partition_then_is_re_emitted(
    processor: Processor,
) -> None:
    p = processor
    async with p.app.agents["reviews-cdc"].test_context() as reviews:
        await reviews.put(
            envelope(
                "c",
                after=review_row(
                    "00000000-0000-4000-8000-000000000006",
                    product_id=7,
                    body="Arrived before the catalogue knew the product",
                ),
            ),
            key=b"k",
        )
    [(route, key, partition)] = await pump(p)
    assert (route, key, partition) == ("reviews-by-product", b"id:7", agents.partition_of(b"id:7"))
    [(_key, early)] = sent(p, topics.REVIEWS_ENRICHED.name)
    assert early["product_known"] is False
    assert p.reviews.orphans["id:7"] == ["00000000-0000-4000-8000-000000000006"]
    async with p.app.agents["products"].test_context() as products:
        await products.put(
            envelope("c", after=product_row(7, "BLD-7"), table="products"), key=b'{"id":7}'
        )
    await pump(p)
    [_early, (_key, joined)] = sent(p, topics.REVIEWS_ENRICHED.name)
    assert joined["review_id"] == early["review_id"] and joined["product_sku"] == "BLD-7"
    assert "id:7" not in p.reviews.orphans


async def test_a_rebalance_rebuilds_the_dedup_sweep_order(processor: Processor) -> None:
    p = processor
    p.reviews.sweep_dedup(limit=1)
    assert p.reviews._claim_order is not None
    await p.app.on_partitions_assigned.send(set())
    assert p.reviews._claim_order is None  # rebuilt from the table by the next sweep


async def test_tombstone_is_skipped_and_garbage_is_dead_lettered(processor: Processor) -> None:
    p = processor
    async with p.app.agents["reviews-cdc"].test_context() as reviews:
        await reviews.put(None, key=b'{"id":"x"}')
        await reviews.put(b"\xff not json", key=b"orig-key", partition=2)
    assert sent(p, topics.REVIEWS_ENRICHED.name) == []
    [(key, dlq)] = sent(p, topics.DLQ.name)
    assert key == b"orig-key"
    assert dlq["reason"] == "undecodable" and dlq["service"] == "cdc_processor"
    assert dlq["source_topic"] == topics.REVIEWS_CDC.name
    assert dlq["source_partition"] == 2 and dlq["source_offset"] == 1
    assert base64.b64decode(dlq["original_value_b64"]) == b"\xff not json"


async def test_crawled_review_agent_emits_enriched(processor: Processor) -> None:
    p = processor
    value = orjson.dumps(
        {
            "source": "shopx",
            "external_id": "1",
            "url": "https://shopx.example/1",
            "rating": 5,
            "body": "Superbe produit, je recommande vivement.",
            "crawled_at": T0.isoformat(),
        }
    )
    async with p.app.agents["reviews-crawled"].test_context() as crawled:
        await crawled.put(value, key=b"shopx:1")
    [(_route, key, _p)] = await pump(p)
    assert key == b"sku:"  # no SKU: the one partition of SKU-less crawls
    [(key, record)] = sent(p, topics.REVIEWS_ENRICHED.name)
    assert key == b"crawl:shopx:1" and record["source"] == "crawl:shopx"
    assert record["language"] == "fr"


async def test_cdc_ticks_are_repartitioned_by_symbol_with_source_position(
    processor: Processor,
) -> None:
    p = processor
    async with p.app.agents["ticks-cdc"].test_context() as ticks:
        await ticks.put(
            envelope("c", after=tick_row(1, symbol="ETH-USD"), table="market_ticks"),
            key=b'{"symbol":"ETH-USD"}',  # the connector keys market_ticks by symbol
            partition=2,
        )
    internal = p.ticks_by_symbol.get_topic_name()
    [(key, value)] = sent(p, internal)
    assert key == b"ETH-USD" and value["src"] == [topics.MARKET_TICKS_CDC.name, 2, 0]


async def test_repartitioned_ticks_build_candles_and_skip_redelivery(processor: Processor) -> None:
    p = processor
    from datetime import timedelta
    from decimal import Decimal

    from cdc_processor.decoding import Tick, tick_to_json
    from contracts.rows import AssetClass

    def t(n: int, at_s: int, price: str) -> bytes:
        tick = Tick(
            f"db:{n}",
            "ETH-USD",
            AssetClass.CRYPTO,
            Decimal(price),
            Decimal(1),
            T0 + timedelta(seconds=at_s),
        )
        return tick_to_json(tick, source=(topics.MARKET_TICKS_CDC.name, 0, n))

    async with p.app.agents["ticks-by-symbol"].test_context() as agent:
        for n, (at_s, price) in enumerate([(1, "10"), (30, "12"), (30, "12"), (70, "11")]):
            # the third is a redelivered copy of the second (same source offset)
            await agent.put(t(n if n != 2 else 1, at_s, price), key=b"ETH-USD")
    [(key, candle)] = sent(p, topics.MARKET_CANDLES.name)
    assert key == b"ETH-USD" and candle["trade_count"] == 2 and Decimal(candle["close"]) == 12
    assert sent(p, topics.DLQ.name) == []


async def test_quotes_agent_dead_letters_late_ticks(processor: Processor) -> None:
    p = processor
    from datetime import timedelta

    async with p.app.agents["quotes"].test_context() as agent:
        await agent.put(quote("AAPL", "190", T0 + timedelta(seconds=1)), key=b"AAPL")
        await agent.put(quote("AAPL", "191", T0 + timedelta(seconds=90)), key=b"AAPL")
        await agent.put(quote("AAPL", "189", T0 + timedelta(seconds=2)), key=b"AAPL")
    assert len(sent(p, topics.MARKET_CANDLES.name)) == 1
    [(_key, dlq)] = sent(p, topics.DLQ.name)
    assert dlq["reason"] == "late" and dlq["source_offset"] == 2


class _Event:
    def __init__(self, message: Any) -> None:
        self.message = message


async def test_review_table_writes_go_to_the_partition_the_key_lives_in(
    processor: Processor,
) -> None:
    products = processor.reviews.products
    table = products.table  # type: ignore[attr-defined]
    products.current_event = _event(b"", partition=2, offset=0, key=b"sku:KTL-100")
    products["sku:KTL-100"] = {"id": 1, "name": "Kettle"}
    [record] = products.changelog_records()  # type: ignore[attr-defined]
    assert record.topic == table.changelog_topic.get_topic_name()
    assert (record.key, record.partition) == (b'"sku:KTL-100"', 2)  # the event's partition
    assert orjson.loads(record.value) == {"id": 1, "name": "Kettle"}
    assert table["sku:KTL-100"] == {"id": 1, "name": "Kettle"}
    # Deleted under an event of another partition (a sweep runs under the batch's last
    # event): the tombstone still goes where the key lives, or recovery would revive it.
    products.current_event = _event(b"", partition=0, offset=5, key=b"other")
    del products["sku:KTL-100"]
    [tombstone] = products.changelog_records()  # type: ignore[attr-defined]
    assert (tombstone.key, tombstone.value, tombstone.partition) == (b'"sku:KTL-100"', None, 2)
    assert "sku:KTL-100" not in table


def _event(value: bytes, *, partition: int, offset: int, key: bytes) -> _Event:
    return _Event(
        MagicMock(
            topic=topics.MARKET_QUOTES.name,
            partition=partition,
            offset=offset,
            key=key,
            value=value,
            timestamp=None,
        )
    )


async def test_a_batch_writes_each_table_key_once_under_its_last_event(
    processor: Processor,
) -> None:
    from datetime import timedelta

    from cdc_processor.agents import process_batch

    p = processor
    candles = p.ticks.states
    table = candles.table  # type: ignore[attr-defined]
    changelog = table.changelog_topic.get_topic_name()
    batch = [
        _event(quote("AAPL", "100", T0 + timedelta(seconds=1)), partition=1, offset=0, key=b"A"),
        _event(quote("MSFT", "200", T0 + timedelta(seconds=1)), partition=2, offset=0, key=b"M"),
        _event(quote("AAPL", "101", T0 + timedelta(seconds=2)), partition=1, offset=1, key=b"A"),
        _event(b"{", partition=0, offset=9, key=b"x"),
        _event(quote("AAPL", "102", T0 + timedelta(seconds=3)), partition=1, offset=2, key=b"A"),
    ]
    await process_batch(p, batch, p.handlers["quotes"], MagicMock())
    # AAPL three times and MSFT once: one changelog record per symbol, on the partition of the
    # last event that touched it, keyed and serialized as the table reads them back.
    calls = p.app.producer.send.call_args_list  # type: ignore[attr-defined]
    written = [c.args for c in calls if c.args[0] == changelog]
    assert sorted((key, partition) for _t, key, _v, partition, *_ in written) == [
        (b'"AAPL"', 1),
        (b'"MSFT"', 2),
    ]
    loads = p.app.serializers.loads_value
    for _t, key, value, *_ in written:
        symbol = p.app.serializers.loads_key(None, key, serializer="json")
        assert loads(None, value, serializer="json") == table[symbol]
    assert candles.pending == 0 and len(table["AAPL"]["recent_ids"]) == 3
    [(key, dlq)] = sent(p, topics.DLQ.name)
    assert key == b"x" and dlq["source_offset"] == 9


async def batch_sizes(
    monkeypatch: pytest.MonkeyPatch, count: int, *, settle_s: float, **overrides: Any
) -> list[int]:
    """Put `count` quotes through a batched `quotes` agent; the sizes of the batches it took
    while the test context stayed open for `settle_s` after the last put (leaving the context
    stops the agent, which hands over what it holds: not counted)."""
    p = make_processor(**overrides)
    sizes: list[int] = []
    original = agents.process_batch

    async def recording(processor: Any, events: Any, *args: Any) -> None:
        sizes.append(len(events))
        await original(processor, events, *args)

    monkeypatch.setattr(agents, "process_batch", recording)
    async with p.app.agents["quotes"].test_context() as quotes:
        for i in range(count):
            await quotes.put(quote("BTC-USD", "100", T0 + timedelta(seconds=i)), key=b"BTC-USD")
        await asyncio.sleep(settle_s)
        taken = list(sizes)
    return taken


async def test_a_batch_ends_once_records_stop_coming_not_at_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A 10 s window: only the 2 ms quiet rule can end these batches while the context is open
    # (Faust's take_events waited out the window before every batch).
    sizes = await batch_sizes(
        monkeypatch, 5, settle_s=0.2, batch_max=500, batch_within_s=10, batch_idle_s=0.002
    )
    assert sum(sizes) == 5


async def test_a_batch_never_holds_more_than_batch_max(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = await batch_sizes(
        monkeypatch, 7, settle_s=0.2, batch_max=3, batch_within_s=10, batch_idle_s=0.002
    )
    assert sum(sizes) == 7 and max(sizes) <= 3


async def test_with_a_long_quiet_rule_a_batch_waits_for_its_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sizes = await batch_sizes(
        monkeypatch, 3, settle_s=0.1, batch_max=500, batch_within_s=10, batch_idle_s=10
    )
    assert sizes == []  # neither full, nor quiet for 10 s, nor 10 s old: still gathering


async def test_table_changelog_is_sent_only_once_kafka_has_the_outputs(
    processor: Processor,
) -> None:
    # A kill -9 between the two must never leave state (changelog) ahead of the outputs built
    # from it: the replay would see its inputs as done and never send those outputs again.
    p = processor
    loop = asyncio.get_running_loop()
    sends: list[str] = []
    deliveries: list[asyncio.Future[None]] = []

    async def send(topic: str, *_args: Any) -> asyncio.Future[None]:
        sends.append(topic)
        deliveries.append(loop.create_future())
        return deliveries[-1]

    p.app.producer.send = send  # type: ignore[method-assign]
    outputs = [Output(topics.MARKET_CANDLES.name, b"BTC-USD", b"{}")] * 2
    changelog = [ChangelogRecord("cdc-candles-changelog", b'"BTC-USD"', b"{}", 0)]
    publishing = asyncio.create_task(agents.publish(p, outputs, changelog))
    await asyncio.sleep(0.05)
    assert sends == [topics.MARKET_CANDLES.name] * 2  # outputs out, changelog held back
    assert not publishing.done()
    for delivery in deliveries:
        delivery.set_result(None)
    await asyncio.wait_for(publishing, timeout=1)
    assert sends[-1] == "cdc-candles-changelog"


async def test_a_refused_output_keeps_the_changelog_unsent(processor: Processor) -> None:
    p = processor
    sends: list[str] = []

    async def send(topic: str, *_args: Any) -> asyncio.Future[None]:
        sends.append(topic)
        future = asyncio.get_running_loop().create_future()
        future.set_exception(RuntimeError("broker refused the record"))
        return future

    p.app.producer.send = send  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="refused"):
        await agents.publish(
            p,
            [Output(topics.ALERTS.name, b"k", b"{}")],
            [ChangelogRecord("cdc-bursts-changelog", b'"k"', b"{}", None)],
        )
    assert sends == [topics.ALERTS.name]


async def test_a_change_event_sets_its_commit_time_and_replication_lag(
    processor: Processor,
) -> None:
    from servicekit import metrics

    p = processor
    committed_ms = 1795366800123
    async with p.app.agents["products"].test_context() as products:
        await products.put(
            envelope("c", after=product_row(9, "KTL-900"), table="products", ts_ms=committed_ms),
            key=b'{"id":9}',
            timestamp=committed_ms / 1000 + 2.5,  # reached Kafka 2.5 s after its commit
        )
        await products.put(None, key=b'{"id":9}')  # a tombstone changes neither
    topic = topics.PRODUCTS_CDC.name
    assert metrics.CDC_LAST_CHANGE.labels(topic)._value.get() == committed_ms / 1000
    assert metrics.CDC_REPLICATION_LAG.labels(topic)._value.get() == pytest.approx(2.5)


def test_partition_of_is_where_the_producer_sends_a_key() -> None:
    # A review stays in its partition when its SKU's partition is this one: only right if
    # partition_of agrees with the app's producer partitioner on every key.
    from servicekit.partitioner import Murmur2Partitioner

    partitions = list(range(topics.PARTITIONS))
    for n in range(200):
        for key in (f"id:{n}".encode(), f"sku:SKU-{n}".encode()):
            assert agents.partition_of(key) == Murmur2Partitioner()(key, partitions, partitions)


def test_internal_topics_are_every_topic_faust_would_declare(processor: Processor) -> None:
    # python -m cdc_processor creates these itself and turns Faust's declaring off: a topic
    # missing here would not exist on a fresh deployment.
    from cdc_processor.app import internal_topics

    specs = {spec.name: spec for spec in internal_topics(processor)}
    app_id = processor.settings.app_id
    declared = {t.changelog_topic.get_topic_name() for t in processor.app.tables.values()}
    declared |= {t.get_topic_name() for t in processor.app.topics if t.internal}
    assert declared <= set(specs), declared - set(specs)
    assert specs[f"{app_id}-review-dedup-changelog"].compacted
    assert specs[f"{app_id}-reviews-by-product"].partitions == topics.PARTITIONS
    assert specs[f"{app_id}-__assignor-__leader"].partitions == 1
