"""VADER's compound score, computed like vaderSentiment 3.3.2's `polarity_scores` but faster.

Same lexicon, emoji descriptions and constants (read from the installed package), same rules,
same float operations in the same order, so `VaderCompound().compound(t)` equals
`SentimentIntensityAnalyzer().polarity_scores(t)["compound"]` bit for bit (the unit tests
compare the two on thousands of texts). What is faster:

- the emoji pass skips ASCII text (no emoji key is ASCII) and slices around the emoji;
- tokens are lowercased once, not once per rule per lexicon word (the reference rebuilds the
  lowercased token list up to four times for every lexicon word: quadratic in the text);
- only lexicon words are visited; every other token scores 0, so it is never appended;
- a lexicon word with no rule word among the three before it skips the rule chain, in
  which nothing could act on it;
- the idiom check builds no strings: tuple look-ups, guarded by the idioms' word pairs;
- the "but" rule runs on the non-zero scores only (zeros are fixed points of its quirks).

Only the compound score is computed: pos/neu/neg are not used by the pipeline.
"""

from __future__ import annotations

import math
import re
import string
from itertools import pairwise

from vaderSentiment.vaderSentiment import (
    BOOSTER_DICT,
    C_INCR,
    N_SCALAR,
    NEGATE,
    SPECIAL_CASES,
    SentimentIntensityAnalyzer,
)

_PUNCTUATION = string.punctuation
_NEGATE = frozenset(NEGATE)
# Tokens never contain whitespace, so multi-word keys only match as sequences of tokens.
_BOOSTERS: dict[str, float] = {k: v for k, v in BOOSTER_DICT.items() if " " not in k}
_BOOSTER_NGRAMS: dict[tuple[str, ...], float] = {
    tuple(k.split(" ")): v for k, v in BOOSTER_DICT.items() if " " in k
}
_SPECIAL: dict[tuple[str, ...], float] = {
    tuple(k.split(" ")): v for k, v in SPECIAL_CASES.items() if " " in k
}
# A sequence of tokens can only match an idiom or a booster n-gram when each pair of
# neighbours in it is a pair of neighbours in some key.
_PAIRS = frozenset(pair for key in (*_BOOSTER_NGRAMS, *_SPECIAL) for pair in pairwise(key))
_PAIR_FIRSTS = frozenset(first for first, _second in _PAIRS)
# A lexicon word's rules can only act if it is one of _ACTIVE_SELF or one of the three
# words before it is _ACTIVE (or holds "n't"): anything else is a no-op in every rule
# (boosters, negation, "no", "never so/this", "without doubt", "least", idioms, n-grams).
_ACTIVE = frozenset(
    {*_NEGATE, *_BOOSTERS, "no", "least", "so", "this", "never", "without", *_PAIR_FIRSTS}
)
_ACTIVE_SELF = frozenset({"no", "kind", *_PAIR_FIRSTS})
_SO_THIS = ("so", "this")
_OR_NOR = ("or", "nor")
_AT_VERY = ("at", "very")


class VaderCompound:
    """The compound score of vaderSentiment, rounded to 4 places as `polarity_scores` does."""

    def __init__(self, analyzer: SentimentIntensityAnalyzer | None = None) -> None:
        reference = analyzer if analyzer is not None else SentimentIntensityAnalyzer()
        self._lexicon: dict[str, float] = dict(reference.lexicon)
        # Boosters are checked before the lexicon: a token that is both scores 0.
        self._scored = frozenset(w for w in self._lexicon if w not in BOOSTER_DICT)
        # The reference looks emoji up one character at a time: longer keys never match.
        self._emojis: dict[str, str] = {k: v for k, v in reference.emojis.items() if len(k) == 1}
        if any(k.isascii() for k in self._emojis):  # pragma: no cover - package data changed
            raise ValueError("an ASCII emoji key breaks the ASCII fast path")
        # Candidates by one fast range (sre tests a 1,200-char class linearly), then a dict
        # look-up: accented letters are below U+2000 and never reach the dict.
        if any(
            ord(k) < 0x2000 and k not in "\u00a9\u00ae" for k in self._emojis
        ):  # pragma: no cover
            raise ValueError("emoji below U+2000 other than (c) and (r): widen the prefilter")
        self._maybe_emoji = re.compile("[\u00a9\u00ae\u2000-\U0010ffff]")

    def _describe_emojis(self, text: str) -> str:
        """The reference's emoji pass: each emoji becomes its description, after a space
        unless the previous output character was a space (at the start, it counts as one;
        after an emoji it never is)."""
        emojis = self._emojis
        out: list[str] = []
        start = 0
        for match in self._maybe_emoji.finditer(text):
            description = emojis.get(match.group())
            if description is None:
                continue
            at = match.start()
            out.append(text[start:at])
            if at > 0 and text[at - 1] != " ":
                out.append(" ")
            out.append(description)
            start = at + 1
        if not out:
            return text
        out.append(text[start:])
        return "".join(out)

    def compound(self, text: str) -> float:
        """`polarity_scores(text)["compound"]`: the compound score rounded to 4 places."""
        return round(self.compound_unrounded(text), 4)

    def compound_unrounded(self, text: str) -> float:
        """The compound score before `polarity_scores` rounds it."""
        if not text.isascii():
            text = self._describe_emojis(text)
        # (The reference strips the text here: neither split() nor the !/? counts notice.)
        raw = text.split()
        n = len(raw)
        if n == 0:
            return 0.0
        punct = _PUNCTUATION
        # The reference's tokens are stripped of punctuation (unless that leaves <= 2 chars),
        # then lowered for every look-up. In ASCII, lowering and stripping commute and keep
        # lengths, so the whole text is lowered at once; otherwise strip first, then lower
        # (lowering can change a token's length). isupper() is asked of the raw tokens:
        # punctuation is uncased, so the answer is the stripped token's.
        if text.isascii():
            lower = [c if len(c := t.strip(punct)) > 2 else t for t in text.lower().split()]
        else:
            lower = [(c if len(c := t.strip(punct)) > 2 else t).lower() for t in raw]
        # Whether some but not all tokens are in capitals: worked out on first need, if any.
        caps: list[bool] = []
        scored = self._scored
        if scored.isdisjoint(lower):
            return 0.0  # every token scores 0: normalize(0.0) is 0.0

        lexicon = self._lexicon
        active = _ACTIVE
        active_self = _ACTIVE_SELF
        # No character lowers to an apostrophe: without one, no token holds "n't".
        maybe_nt = "'" in text
        boosters = _BOOSTERS
        negate = _NEGATE
        pairs = _PAIRS
        pair_firsts = _PAIR_FIRSTS
        positions: list[int] = []
        values: list[float] = []
        last = n - 1
        for i in [i for i, w in enumerate(lower) if w in scored]:
            w0 = lower[i]
            if (
                w0 not in active_self
                and (
                    i < 1
                    or (lower[i - 1] not in active and not (maybe_nt and "n't" in lower[i - 1]))
                )
                and (
                    i < 2
                    or (lower[i - 2] not in active and not (maybe_nt and "n't" in lower[i - 2]))
                )
                and (
                    i < 3
                    or (lower[i - 3] not in active and not (maybe_nt and "n't" in lower[i - 3]))
                )
            ):
                # No rule applies but capitals (the rules' `valence + 0.0` only ever turned
                # -0.0 into 0.0, and zeros are dropped either way).
                valence = _emphasised(lexicon[w0], raw[i], raw, caps)
                if valence:
                    positions.append(i)
                    values.append(valence)
                continue
            if w0 == "kind" and i < last and lower[i + 1] == "of":
                continue
            base = lexicon[w0]
            valence = base
            if w0 == "no" and i != last and lower[i + 1] in lexicon:
                valence = 0.0
            if (
                (i > 0 and lower[i - 1] == "no")
                or (i > 1 and lower[i - 2] == "no")
                or (i > 2 and lower[i - 3] == "no" and lower[i - 1] in _OR_NOR)
            ):
                valence = base * N_SCALAR
            valence = _emphasised(valence, raw[i], raw, caps)

            if i > 0:
                w1 = lower[i - 1]
                if w1 not in lexicon:
                    valence = valence + _booster(boosters, w1, raw[i - 1], valence, raw, caps)
                    if w1 in negate or "n't" in w1:
                        valence = valence * N_SCALAR
                if i > 1:
                    w2 = lower[i - 2]
                    if w2 not in lexicon:
                        s = _booster(boosters, w2, raw[i - 2], valence, raw, caps)
                        if s != 0:
                            s = s * 0.95
                        valence = valence + s
                        if w2 == "never" and w1 in _SO_THIS:
                            valence = valence * 1.25
                        elif w2 == "without" and w1 == "doubt":
                            pass
                        elif w2 in negate or "n't" in w2:
                            valence = valence * N_SCALAR
                    if i > 2:
                        w3 = lower[i - 3]
                        if w3 not in lexicon:
                            s = _booster(boosters, w3, raw[i - 3], valence, raw, caps)
                            if s != 0:
                                s = s * 0.9
                            valence = valence + s
                            if (w3 == "never" and w2 in _SO_THIS) or w1 in _SO_THIS:
                                valence = valence * 1.25
                            elif w3 == "without" and (w2 == "doubt" or w1 == "doubt"):
                                pass
                            elif w3 in negate or "n't" in w3:
                                valence = valence * N_SCALAR
                            if (
                                (w2 in pair_firsts and (w2, w1) in pairs)
                                or (w3 in pair_firsts and (w3, w2) in pairs)
                                or (w1 in pair_firsts and (w1, w0) in pairs)
                                or (w0 in pair_firsts and i < last and (w0, lower[i + 1]) in pairs)
                            ):
                                valence = _idioms(valence, lower, i, w3, w2, w1, w0)
                # "least" is not in the lexicon, so the reference's lexicon test is moot.
                if w1 == "least":
                    if i > 1:
                        if lower[i - 2] not in _AT_VERY:
                            valence = valence * N_SCALAR
                    else:
                        valence = valence * N_SCALAR
            if valence:
                positions.append(i)
                values.append(valence)

        if "but" in lower:
            _but(values, positions, lower.index("but"))
        sum_s = float(sum(values))
        if sum_s:
            amplifier = _punctuation_emphasis(text)
            if sum_s > 0:
                sum_s += amplifier
            elif sum_s < 0:
                sum_s -= amplifier
        return _normalize(sum_s)


def _idioms(valence: float, lower: list[str], i: int, w3: str, w2: str, w1: str, w0: str) -> float:
    """The reference's `_special_idioms_check`, on tuples instead of joined strings."""
    special = _SPECIAL
    for seq in ((w1, w0), (w2, w1, w0), (w2, w1), (w3, w2, w1), (w3, w2)):
        found = special.get(seq)
        if found is not None:
            valence = found
            break
    n = len(lower)
    if n - 1 > i:
        found = special.get((w0, lower[i + 1]))
        if found is not None:
            valence = found
    if n - 1 > i + 1:
        found = special.get((w0, lower[i + 1], lower[i + 2]))
        if found is not None:
            valence = found
    for ngram in ((w3, w2, w1), (w3, w2), (w2, w1)):
        boost = _BOOSTER_NGRAMS.get(ngram)
        if boost is not None:
            valence = valence + boost
    return valence


def _emphasised(valence: float, raw_word: str, raw: list[str], caps: list[bool]) -> float:
    """A scored word in ALL CAPS among mixed-case text pushes its valence outwards."""
    if raw_word.isupper() and _cap_diff(raw, caps):
        valence = valence + C_INCR if valence > 0 else valence - C_INCR
    return valence


def _booster(
    boosters: dict[str, float],
    word: str,
    raw_word: str,
    valence: float,
    raw: list[str],
    caps: list[bool],
) -> float:
    """The reference's `scalar_inc_dec`: a booster word's push on `valence` (0.0 otherwise)."""
    s = boosters.get(word)
    if s is None:
        return 0.0
    if valence < 0:
        s *= -1
    if raw_word.isupper() and _cap_diff(raw, caps):
        s = s + C_INCR if valence > 0 else s - C_INCR  # outwards from the word it boosts
    return s


def _cap_diff(tokens: list[str], cache: list[bool]) -> bool:
    """The reference's `allcap_differential` (some but not all tokens are ALL CAPS), computed
    once per text into `cache`: only needed when a scored word or booster is in capitals."""
    if not cache:
        cache.append(0 < sum(map(str.isupper, tokens)) < len(tokens))
    return cache[0]


def _but(values: list[float], positions: list[int], but_at: int) -> None:
    """The reference's `_but_check`, quirks included, on the non-zero scores.

    It walks the scores and rescales the *first* score equal to each one (pop + insert at
    `list.index`), so repeated values can be rescaled twice or not at all. Zeros stay zeros
    and never equal a non-zero score, so dropping them changes nothing.
    """
    for k in range(len(values)):
        value = values[k]
        at = values.index(value)
        if positions[at] < but_at:
            values[at] = value * 0.5
        elif positions[at] > but_at:
            values[at] = value * 1.5


def _punctuation_emphasis(text: str) -> float:
    ep_count = text.count("!")
    if ep_count > 4:
        ep_count = 4
    ep_amplifier = ep_count * 0.292
    qm_count = text.count("?")
    qm_amplifier: float = 0
    if qm_count > 1:
        qm_amplifier = qm_count * 0.18 if qm_count <= 3 else 0.96
    return ep_amplifier + qm_amplifier


def _normalize(score: float, alpha: float = 15) -> float:
    norm_score = score / math.sqrt((score * score) + alpha)
    if norm_score < -1.0:
        return -1.0
    if norm_score > 1.0:
        return 1.0
    return norm_score
