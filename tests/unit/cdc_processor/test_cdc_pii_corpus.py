"""Precision and recall of the PII scrubber per kind on the labelled corpus, against the
floors stated in services/cdc_processor/README.md."""

from __future__ import annotations

from collections import Counter

import pytest
from cdc_fixtures import pii_tally, precision_recall
from cdc_pii_corpus import CORPUS
from cdc_processor.pii import PLACEHOLDER, PiiKind, Scrubber, detect

# Floors (README "PII"). Measured values are higher; the floors leave room for
# corpus growth without hiding a regression.
FLOORS: dict[str, tuple[float, float]] = {  # kind → (precision, recall)
    "email": (0.98, 0.98),
    "phone": (0.95, 0.90),
    "card": (0.98, 0.95),
    "iban": (0.98, 0.95),
    "ip": (0.95, 0.95),
    "url_credentials": (0.98, 0.95),
    "name": (0.90, 0.75),
}


def _measure() -> tuple[Counter[str], Counter[str], Counter[str]]:
    return pii_tally(
        (text, None, [(kind, value) for kind, values in expected.items() for value in values])
        for _lang, text, expected in CORPUS
    )


def test_corpus_is_large_and_mixed() -> None:
    assert len(CORPUS) >= 200
    languages = Counter(lang for lang, _t, _e in CORPUS)
    assert {"en", "fr", "de"} <= set(languages)
    assert sum(1 for _l, _t, e in CORPUS if not e) >= 60  # texts with tricky non-PII numbers


@pytest.mark.parametrize("kind", sorted(FLOORS))
def test_precision_and_recall_meet_floor(kind: str) -> None:
    tp, fp, fn = _measure()
    precision, recall = precision_recall(kind, tp, fp, fn)
    print(f"{kind}: precision {precision:.3f} recall {recall:.3f} (tp={tp[kind]})")
    min_precision, min_recall = FLOORS[kind]
    assert tp[kind] >= 10, "too few labelled examples to measure"
    assert precision >= min_precision
    assert recall >= min_recall


def test_scrubbed_text_keeps_no_labelled_value() -> None:
    scrubber = Scrubber()
    leaks = []
    for _lang, text, expected in CORPUS:
        result = scrubber.scrub(text)
        for kind, values in expected.items():
            if kind == "name":
                continue  # names outside cues are a known gap (README)
            leaks.extend((kind, v) for v in values if v in result.text)
    assert leaks == []


def test_placeholders_are_typed_and_counted() -> None:
    result = Scrubber().scrub("mail a@b.de or call +49 30 1234 5678, card 4242 4242 4242 4242")
    assert (
        result.text
        == f"mail {PLACEHOLDER[PiiKind.EMAIL]} or call {PLACEHOLDER[PiiKind.PHONE]}, card [CARD]"
    )
    assert result.counts == {"email": 1, "phone": 1, "card": 1}


def test_author_name_is_scrubbed_wherever_it_appears() -> None:
    result = Scrubber().scrub("Jane here. jane doe loves it, says DOE.", author_names=("Jane Doe",))
    assert "jane" not in result.text.lower() and "doe" not in result.text.lower()
    assert result.counts["name"] >= 2


def test_luhn_invalid_number_is_not_a_card() -> None:
    assert Scrubber().scrub("ref 4111 1111 1111 1112 kept").counts == {}


def test_iban_with_bad_checksum_is_kept() -> None:
    assert Scrubber().scrub("IBAN DE00 3704 0044 0532 0130 00").counts == {}


def _detect_full(text: str) -> list[tuple[PiiKind, int, int]]:
    """The reference: every text through the full combined pattern."""
    from cdc_processor import pii

    spans = (pii._classify(m, text, pii._DEFAULT_PHONES, None) for m in pii._PATTERN.finditer(text))
    return [span for span in spans if span is not None]


def test_gated_patterns_find_exactly_what_the_full_pattern_finds() -> None:
    """detect() leaves out the alternatives a text cannot match; the spans must not change."""
    from cdc_processor import pii

    texts = [text for _lang, text, _e in CORPUS]
    # Variants that close gates one at a time: no digits, no "@", no ":", no ".", no capitals.
    for drop in (str.isdigit, "@".__eq__, ":".__eq__, ".".__eq__):
        texts += ["".join(ch for ch in t if not drop(ch)) for t in texts[: len(CORPUS)]]
    texts += [t.lower() for t in texts[: len(CORPUS)]]
    texts += [
        "Regards, Jean-Pierre Martin",
        "Mit freundlichen Grüßen, MfG, Anna Schmidt",
        "Thanks, Bob. I am Very happy",
        "numbers in other scripts ٣٤٥٦٧٨٩٠١٢ and ５５５-１２３-４５６７",
        "beef:cafe::1 is not a phone",
        "ftp://user:secret@files.example.com/x and 10.0.0.1",
        "IBAN GB82 WEST 1234 5698 7654 32, card 4111 1111 1111 1111",
        "call (415) 555-0100 or 415.555.0100",
    ]
    subsets = set()
    for text in texts:
        subsets.add(pii._possible(text))
        assert detect(text) == _detect_full(text), text
    assert len(subsets) >= 10  # the gates really chose different patterns
