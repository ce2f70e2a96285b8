"""Language of a review: its declared locale when it has one, else lingua restricted to the
expected languages in low-accuracy mode (its models ship in the wheel; nothing downloads)."""

from __future__ import annotations

from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

_MIN_CHARS = 3


class LanguageDetector:
    def __init__(self, *, expected: tuple[str, ...]) -> None:
        languages = [Language.from_iso_code_639_1(_iso(code)) for code in expected]
        if len(languages) < 2:
            self._detector = None
            self._only = expected[0] if expected else None
        else:
            self._detector = (
                LanguageDetectorBuilder.from_languages(*languages).with_low_accuracy_mode().build()
            )
            self._only = None
        self._expected = frozenset(expected)

    def detect(self, text: str, *, locale: str | None = None) -> str | None:
        """ISO 639-1 code; the locale's language wins ("fr-CA" → "fr"); None when unsure."""
        if locale:
            code = locale.replace("_", "-").split("-")[0].strip().lower()
            if len(code) == 2 and code.isalpha():
                return code
        if self._detector is None:
            return self._only
        if len(text.strip()) < _MIN_CHARS:
            return None
        found = self._detector.detect_language_of(text)
        if found is None:
            return None
        return found.iso_code_639_1.name.lower()


def _iso(code: str) -> IsoCode639_1:
    iso: IsoCode639_1 = getattr(IsoCode639_1, code.upper())
    return iso
