"""Precision and recall of the PII scrubber per kind on the independent corpus
(tests/fixtures/pii_independent/corpus.jsonl: written by someone who did not see the scrubber,
frozen by SHA-256 before any tuning), measured as test_cdc_pii_corpus.py measures its own
corpus: a found span counts when (kind, exact substring) is labelled. Each text goes through
the scrubber with its locale, as the service passes the review's locale."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cdc_fixtures import pii_tally, precision_recall

CORPUS_PATH = Path(__file__).parents[2] / "fixtures" / "pii_independent" / "corpus.jsonl"
KINDS = ("email", "card", "iban", "phone")
# The floors for the independent corpus (README "PII").
MIN_PRECISION, MIN_RECALL = 0.97, 0.98

Entry = tuple[str | None, str, list[tuple[str, str]]]  # locale, text, labelled (kind, value)


def _labels(record: dict[str, Any]) -> list[tuple[str, str]]:
    return [(kind, value) for kind, values in record["pii"].items() for value in values]


def _load() -> list[Entry]:
    entries: list[Entry] = []
    if not CORPUS_PATH.exists():
        return entries  # test_corpus_is_the_frozen_independent_one says so
    for line in CORPUS_PATH.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        # The review's locale as the API takes it (BCP 47): language and country.
        lang, country = record["lang"], record.get("country")
        locale = f"{lang}-{country}" if country else lang
        entries.append((locale, record["text"], _labels(record)))
    return entries


CORPUS = _load()


def measure() -> tuple[Counter[str], Counter[str], Counter[str]]:
    return pii_tally((text, locale, labelled) for locale, text, labelled in CORPUS)


def test_corpus_is_the_frozen_independent_one() -> None:
    assert CORPUS_PATH.exists(), f"{CORPUS_PATH} missing: merge the wip/corpus branch"
    assert len(CORPUS) >= 300


@pytest.mark.parametrize("kind", KINDS)
def test_precision_and_recall_meet_floor(kind: str) -> None:
    tp, fp, fn = measure()
    precision, recall = precision_recall(kind, tp, fp, fn)
    print(
        f"{kind}: precision {precision:.3f} recall {recall:.3f} "
        f"(tp={tp[kind]} fp={fp[kind]} fn={fn[kind]})"
    )
    assert tp[kind] >= 10, "too few labelled examples to measure"
    assert precision >= MIN_PRECISION
    assert recall >= MIN_RECALL
