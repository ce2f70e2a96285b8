"""Language detection: function words first, lingua for the rest, measured on the corpus."""

from __future__ import annotations

from cdc_pii_corpus import CORPUS
from cdc_processor.language import LanguageDetector, by_function_words

THREE = frozenset({"en", "fr", "de"})


def test_function_words_decide_most_corpus_texts_and_never_wrongly() -> None:
    decided = [(lang, by_function_words(text, THREE)) for lang, text, _e in CORPUS]
    made = [(lang, found) for lang, found in decided if found is not None]
    assert len(made) >= 0.6 * len(CORPUS)
    wrong = [(lang, found) for lang, found in made if found != lang]
    assert len(wrong) <= 0.01 * len(made), wrong


def test_detector_is_at_least_as_accurate_as_lingua_alone() -> None:
    detector = LanguageDetector(expected=("en", "fr", "de"))
    lingua = detector._detector
    assert lingua is not None
    ours = sum(detector.detect(text) == lang for lang, text, _e in CORPUS)
    theirs = sum(
        (found := lingua.detect_language_of(text)) is not None
        and found.iso_code_639_1.name.lower() == lang
        for lang, text, _e in CORPUS
    )
    assert ours >= theirs
    assert ours >= 0.95 * len(CORPUS)


def test_ambiguous_or_wordless_text_falls_back_to_lingua() -> None:
    assert by_function_words("Bouilloire Wasserkocher kettle", THREE) is None
    assert by_function_words("the kettle und Deckel", THREE) is None  # 1 en vs 1 de
    assert by_function_words("the kettle und der Deckel", THREE) == "de"  # 2 de vs 1 en
    assert by_function_words("the lid and the handle", THREE) == "en"
    assert by_function_words("Der Deckel ist kaputt", THREE) == "de"
    assert by_function_words("c'est très bien", THREE) == "fr"


def test_other_expected_languages_always_use_lingua() -> None:
    detector = LanguageDetector(expected=("en", "es"))
    assert detector._by_words is None
    assert detector.detect("El hervidor es muy bueno y rápido") == "es"
