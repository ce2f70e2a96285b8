"""Sentiment from the VADER lexicon (ships with its package; no download).

VADER is an English lexicon: French and German reviews score mostly on shared words, emoji
and punctuation, so their scores lean neutral. Text beyond `max_chars` is not scored: the
cost per review stays bounded. Scores come from `vader_fast.VaderCompound`, which gives
exactly vaderSentiment's compound score at a fraction of its cost; the reference is
`vaderSentiment.vaderSentiment.SentimentIntensityAnalyzer` (the tests compare the two).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from contracts.events import SentimentLabel

from cdc_processor.vader_fast import VaderCompound

# VADER's own recommended thresholds on the compound score.
POSITIVE_FROM = 0.05
NEGATIVE_TO = -0.05


@dataclass(frozen=True, slots=True)
class Sentiment:
    score: float  # -1 … 1
    label: SentimentLabel


class SentimentScorer:
    def __init__(self, *, max_chars: int = 1000, memo_size: int = 4096) -> None:
        self._vader = VaderCompound()
        self._max_chars = max_chars
        # Same text, same score: repeated texts (a retry, an app review later crawled, stock
        # phrases) are scored once. Bounded; the oldest entry goes first (an OrderedDict: a
        # plain dict's next(iter()) walks over the deleted slots at its front, ~2.5 us).
        self._memo: OrderedDict[str, Sentiment] = OrderedDict()
        self._memo_size = memo_size

    def score(self, text: str) -> Sentiment:
        if not text.strip():
            return Sentiment(0.0, SentimentLabel.NEUTRAL)
        text = text[: self._max_chars]
        found = self._memo.get(text)
        if found is None:
            found = self._score(text)
            if len(self._memo) >= self._memo_size:
                self._memo.popitem(last=False)
            self._memo[text] = found
        return found

    def _score(self, text: str) -> Sentiment:
        compound = self._vader.compound(text)
        compound = round(max(-1.0, min(1.0, compound)), 4)
        if compound >= POSITIVE_FROM:
            label = SentimentLabel.POSITIVE
        elif compound <= NEGATIVE_TO:
            label = SentimentLabel.NEGATIVE
        else:
            label = SentimentLabel.NEUTRAL
        return Sentiment(compound, label)
