"""The routing tree: matching, `continue`, inheritance, and start-up errors naming the line."""

from __future__ import annotations

import pytest
from notifier.labels import alert_labels
from notifier.routing import RoutingError, group_key, parse_routing, simple_router
from notifier_factories import move_alert, review_alert

ROUTING = """\
receivers:
  - name: kitchen
    url: "webhook+http://127.0.0.1:1/k"
  - name: markets
    url_env: MARKETS_URL
  - name: everyone
    url: "mailto://example.com?to=a@example.com"
route:
  receivers: [everyone]
  group_by: [kind]
  group_wait_s: 5
  routes:
    - match: {kind: negative_review, category: kitchen}
      receivers: [kitchen]
      group_by: [subject]
      continue: true
    - match: {kind: [negative_review, negative_burst]}
      match_re: {sku: "KTL-.*"}
      group_wait_s: 1
    - match: {kind: price_move, asset_class: crypto}
      receivers: [markets]
      repeat_interval_s: 60
inhibit_rules:
  - source: {kind: negative_burst}
    target: {kind: negative_review}
    equal: [subject]
    duration_s: 300
"""


def route(text: str = ROUTING, names: tuple[str, ...] = ()) -> dict[str, object]:
    router = parse_routing(text, source="routes.yaml", receiver_names=names)
    return {"router": router}


def test_first_match_and_continue_reach_both_receivers_with_their_own_grouping() -> None:
    router = parse_routing(ROUTING, source="routes.yaml", receiver_names=[])
    dests = {d.receiver: d for d in router.destinations(alert_labels(review_alert()))}
    assert set(dests) == {"kitchen", "everyone"}
    # kitchen: its own group_by, the root's wait; everyone: inherited by the second route
    assert dests["kitchen"].group_labels == {"subject": "product:1"}
    assert dests["kitchen"].grouping.group_wait_s == 5
    assert dests["everyone"].grouping.group_wait_s == 1
    assert dests["everyone"].group_labels == {"kind": "negative_review"}


def test_without_continue_the_first_matching_child_wins() -> None:
    text = ROUTING.replace("      continue: true\n", "")
    router = parse_routing(text, source="routes.yaml", receiver_names=[])
    assert [d.receiver for d in router.destinations(alert_labels(review_alert()))] == ["kitchen"]


def test_unmatched_alert_falls_back_to_the_root_receivers() -> None:
    router = parse_routing(ROUTING, source="routes.yaml", receiver_names=[])
    labels = alert_labels(move_alert(details={"asset_class": "equity"}))
    assert [d.receiver for d in router.destinations(labels)] == ["everyone"]
    crypto = router.destinations(alert_labels(move_alert()))
    assert [(d.receiver, d.grouping.repeat_interval_s) for d in crypto] == [("markets", 60)]


def test_group_keys_differ_per_group_and_are_stable() -> None:
    router = parse_routing(ROUTING, source="routes.yaml", receiver_names=[])
    one = router.destinations(alert_labels(review_alert(1)))
    again = router.destinations(alert_labels(review_alert(2)))
    other = router.destinations(alert_labels(review_alert(3, subject="product:2")))
    by = {d.receiver: d.group_key for d in one}
    assert by == {d.receiver: d.group_key for d in again}
    assert by["kitchen"] != {d.receiver: d.group_key for d in other}["kitchen"]
    assert by["everyone"] == {d.receiver: d.group_key for d in other}["everyone"]


def test_group_keys_are_the_documented_hash_of_receiver_route_and_grouped_values() -> None:
    """Keys are persisted in the outbox journal: the fast path in `destinations` must give
    what `group_key` defines, or a restart would split a waiting group in two."""
    labels = alert_labels(review_alert(1))
    for dest in simple_router(["a", "b"]).destinations(labels):
        grouped = {k: labels[k] for k in ("subject", "kind")}  # any order: keys are sorted
        assert dest.group_key == group_key(dest.receiver, "root", grouped)


@pytest.mark.parametrize(
    ("change", "line", "reason"),
    [
        (("receivers: [kitchen]", "receivers: [kitchn]"), 14, "unknown receiver 'kitchn'"),
        (("category: kitchen}", "colour: red}"), 13, "unknown label(s) ['colour']"),
        (("group_wait_s: 1", "group_wait_s: soon"), 19, "group_wait_s"),
        (("  group_by: [kind]", "  group_by: [kind"), 11, "not valid YAML"),
        (("      continue: true", "      continue: maybe"), 16, "continue"),
        (('match_re: {sku: "KTL-.*"}', 'match_re: {sku: "KTL-("}'), 18, "match_re"),
        (("    url_env: MARKETS_URL\n", ""), 4, "needs url or url_env"),
    ],
)
def test_bad_routing_file_names_line_and_reason(
    change: tuple[str, str], line: int, reason: str
) -> None:
    text = ROUTING.replace(*change)
    assert text != ROUTING
    with pytest.raises(RoutingError) as caught:
        parse_routing(text, source="routes.yaml", receiver_names=[])
    message = str(caught.value)
    assert message.startswith(f"routes.yaml:{line}:"), message
    assert reason in message


def test_receivers_from_notifier_urls_can_be_named_in_the_file() -> None:
    text = "route:\n  receivers: [webhook-1]\n"
    router = parse_routing(text, source="r.yaml", receiver_names=["webhook-1"])
    assert [d.receiver for d in router.destinations({"kind": "stale_feed"})] == ["webhook-1"]


def test_simple_router_sends_everything_everywhere_and_inhibits_singles_during_a_burst() -> None:
    router = simple_router(["webhook-1", "mailto-2"])
    dests = router.destinations(alert_labels(move_alert()))
    assert [d.receiver for d in dests] == ["webhook-1", "mailto-2"]
    assert dests[0].grouping.group_wait_s <= 5
    assert router.inhibit_rules[0].source == {"kind": "negative_burst"}
