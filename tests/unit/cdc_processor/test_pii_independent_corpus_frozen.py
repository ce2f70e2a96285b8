"""The independent PII corpus (tests/fixtures/pii_independent) is frozen and sound.

The corpus was written apart from the scrubber to measure it; tuning the scrubber must never edit
it. Its SHA-256 is recorded in FROZEN when it was committed, so any edit fails here. Its labels are
checked by the corpus's own stand-alone validator (Luhn, mod-97, libphonenumber when installed).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import ModuleType

import pytest
from pulse_cli.scripts import load_script

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "pii_independent"
CORPUS = FIXTURE / "corpus.jsonl"


@pytest.fixture(scope="module")
def checker() -> ModuleType:
    return load_script(FIXTURE / "check_corpus.py", "pulse_pii_independent_check")


@pytest.fixture(scope="module")
def records(checker: ModuleType) -> list[dict]:
    return checker.load(CORPUS)


def test_corpus_matches_the_frozen_hash() -> None:
    recorded, name = (FIXTURE / "FROZEN").read_text(encoding="ascii").split()
    assert name == "corpus.jsonl"
    assert hashlib.sha256(CORPUS.read_bytes()).hexdigest() == recorded, (
        "corpus.jsonl differs from the frozen version: the independent corpus must not be "
        "edited; put new material in a new file"
    )


def test_every_label_passes_the_validator(checker: ModuleType, records: list[dict]) -> None:
    assert checker.check(records) == []


def test_corpus_covers_what_it_was_written_for(checker: ModuleType, records: list[dict]) -> None:
    texts_by_lang: dict[str, int] = {}
    for record in records:
        texts_by_lang[record["lang"]] = texts_by_lang.get(record["lang"], 0) + 1
    assert len(records) >= 320
    for lang in ("en", "fr", "de", "es", "it", "nl", "pt", "pl"):
        assert texts_by_lang.get(lang, 0) >= 30, lang
    assert sum(1 for r in records if not any(r["pii"].values())) >= 100
    brands = {
        checker.card_brand(checker.card_digits(v)).rstrip("0123456789")
        for r in records
        for v in r["pii"].get("card", [])
    }
    assert brands >= {"visa", "mastercard", "amex", "discover", "jcb", "diners", "unionpay"}
    assert "maestro" in brands
    iban_countries = {v.replace(" ", "")[:2].upper() for r in records for v in r["pii"]["iban"]}
    assert len(iban_countries) >= 10


def _mutated(record: dict, **changes: object) -> dict:
    copy = json.loads(json.dumps(record))
    copy.update(changes)
    return copy


def test_validator_rejects_broken_labels(checker: ModuleType, records: list[dict]) -> None:
    """The checks above would pass vacuously if the validator accepted anything."""
    with_card = next(r for r in records if r["pii"]["card"])
    card = with_card["pii"]["card"][0]
    bad_card = card[:-1] + str((int(card[-1]) + 1) % 10)  # one changed digit: Luhn sees it
    broken_card = _mutated(
        with_card,
        text=with_card["text"].replace(card, bad_card),
        pii={**with_card["pii"], "card": [bad_card]},
    )
    assert any("Luhn" in p for p in checker.check_record(broken_card))

    unlabelled_card = _mutated(with_card, pii={**with_card["pii"], "card": []})
    assert any("unlabelled Luhn-valid" in p for p in checker.check_record(unlabelled_card))

    with_iban = next(r for r in records if r["pii"]["iban"])
    iban = with_iban["pii"]["iban"][0]
    swapped = iban[:-1] + str((int(iban[-1]) + 1) % 10)  # one changed digit: mod-97 sees it
    broken_iban = _mutated(
        with_iban,
        text=with_iban["text"].replace(iban, swapped),
        pii={**with_iban["pii"], "iban": [swapped]},
    )
    assert any("mod-97" in p for p in checker.check_record(broken_iban))

    with_email = next(r for r in records if r["pii"]["email"])
    absent = _mutated(with_email, pii={**with_email["pii"], "email": ["nobody@example.org"]})
    assert any("not a substring" in p for p in checker.check_record(absent))
