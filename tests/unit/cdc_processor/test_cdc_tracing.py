"""Tracing in the agents: with it on, a review's or CDC tick's span continues the trace of the
API request named by the row's `trace_parent` column, and what it emits carries the span's
`traceparent` header; with it off, outputs carry no headers. The column never reaches the
enriched record."""

from __future__ import annotations

from typing import Any

import orjson
from cdc_fixtures import envelope, product_row, review_row, tick_row
from cdc_processor.app import Processor
from contracts import topics
from contracts.events import ReviewEnriched
from servicekit import tracing
from test_cdc_agents import make_processor, pump

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def sends(p: Processor, topic: str) -> list[Any]:
    calls = p.app.producer.send.call_args_list  # type: ignore[attr-defined]
    name = p.topics[topic].get_topic_name() if topic in p.topics else topic
    return [c for c in calls if c.args[0] == name]


def traced_review(review_id: str) -> bytes:
    return envelope("c", after={**review_row(review_id), "trace_parent": PARENT})


async def _review_through_the_agent(p: Processor) -> None:
    async with p.app.agents["products"].test_context() as products:
        await products.put(envelope("c", after=product_row(1), table="products"), key=b"1")
    async with p.app.agents["reviews-cdc"].test_context() as reviews:
        await reviews.put(
            traced_review("4f0e3c1e-0000-4000-8000-000000000001"), key=b"k", partition=1
        )
    await pump(p)  # through the repartition by product (id:1, then sku:KTL-100)


async def test_a_review_span_continues_the_api_trace_and_tags_the_enriched_record(
    trace_spans: Any,
) -> None:
    p = make_processor()  # after the fixture: the agents pick their handlers at registration
    await _review_through_the_agent(p)
    [call] = sends(p, topics.REVIEWS_ENRICHED.name)
    headers = dict(call.args[5])
    child = tracing.valid_traceparent(headers["traceparent"])
    assert child is not None and tracing.trace_id_of(child) == TRACE_ID
    finished = trace_spans.get_finished_spans()
    [span] = [s for s in finished if s.name == "reviews-cdc process"]
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert f"{span.parent.span_id:016x}" == PARENT[36:52]  # the API's span is its parent
    assert span.attributes["messaging.destination.name"] == topics.REVIEWS_CDC.name
    # then one span per repartition hop, each the child of the one before; the last one's
    # traceparent is on the enriched record
    first, second = [s for s in finished if s.name == "reviews-by-product process"]
    assert first.parent.span_id == span.context.span_id
    assert second.parent.span_id == first.context.span_id
    assert child == tracing.format_traceparent(second)
    # transport, not data: the enriched record (what the archive stores) has no trace column
    assert "trace_parent" not in orjson.loads(call.args[2])
    assert "trace_parent" not in ReviewEnriched.model_fields


async def test_with_tracing_off_outputs_carry_no_headers() -> None:
    assert tracing.ENABLED is False
    p = make_processor()
    await _review_through_the_agent(p)
    [call] = sends(p, topics.REVIEWS_ENRICHED.name)
    assert call.args[5] is None


async def test_a_cdc_tick_span_continues_the_trace_through_the_repartition(
    trace_spans: Any,
) -> None:
    p = make_processor()
    async with p.app.agents["ticks-cdc"].test_context() as ticks:
        await ticks.put(
            envelope(
                "c",
                after={**tick_row(1, symbol="ETH-USD"), "trace_parent": PARENT},
                table="market_ticks",
            ),
            key=b'{"symbol":"ETH-USD"}',
        )
    [call] = sends(p, p.ticks_by_symbol.get_topic_name())
    headers = call.args[5]
    assert tracing.trace_id_of(tracing.header_traceparent(headers) or "") == TRACE_ID
    async with p.app.agents["ticks-by-symbol"].test_context() as agent:
        await agent.put(call.args[2], key=b"ETH-USD", headers=headers)
    names = {s.name: s for s in trace_spans.get_finished_spans()}
    repartitioned = names["ticks-by-symbol process"]
    assert f"{repartitioned.context.trace_id:032x}" == TRACE_ID
    assert repartitioned.parent.span_id == names["ticks-cdc process"].context.span_id


async def test_an_untraced_review_opens_no_span_at_the_repartition(trace_spans: Any) -> None:
    # Crawled reviews carry no traceparent: their hop is handled plainly, not as a new trace.
    p = make_processor()
    crawled = orjson.dumps(
        {
            "source": "shopx",
            "external_id": "1",
            "url": "https://shopx.example/1",
            "product_sku": "KTL-100",
            "body": "Solid kettle, boils fast and the lid closes well.",
            "crawled_at": "2026-12-07T06:00:00+00:00",
        }
    )
    async with p.app.agents["reviews-crawled"].test_context() as agent:
        await agent.put(crawled, key=b"shopx:1")
    await pump(p)
    [call] = sends(p, topics.REVIEWS_ENRICHED.name)
    assert call.args[5] is None
    assert [s.name for s in trace_spans.get_finished_spans()] == []
