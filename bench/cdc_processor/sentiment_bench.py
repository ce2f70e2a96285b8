"""Sentiment scoring cost per unique review text: vader_fast vs vaderSentiment, same run.

  uv run python bench/cdc_processor/sentiment_bench.py [--texts N] [--rounds R] [--quick]

Texts are what the pipeline scores: title + ". " + body, capped at 1,000 characters, built
by a seeded generator from review sentences (English mostly, some French and German,
negations, boosters, "but", capitals, !!!/??, emoticons, a few emoji), every one unique so
no memo helps. Both scorers run over the same texts, interleaved round by round; the figure
is each side's best round. A third figure scores the shorter texts of the pipeline bench
(bench/cdc_processor/run.py: "Review. " + one of its bodies). Before timing, every text's
compound is checked to be identical; a mismatch fails the figures. Target: the fast scorer
>= 3x faster (ratio <= 0.333).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

from cdc_processor.sentiment import Sentiment, SentimentScorer
from cdc_processor.vader_fast import VaderCompound
from contracts.events import SentimentLabel
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

MAX_CHARS = 1000
TARGET_RATIO = 1 / 3

TITLES = [
    "Great kettle",
    "Terrible",
    "Not bad",
    "Love it!",
    "Broke after a week",
    "Meh",
    "Five stars",
    "DO NOT BUY",
    "Works as described",
    "Disappointed",
    "Superb value",
    "Très bien",
    "Enttäuschend",
    "Could be better",
    "Perfect gift :)",
    "Why??",
]
EN = [
    "The kettle boils fast but the lid feels cheap",
    "It leaked on day {n} and support never called back",
    "Great value for {p}, arrived on time and well packed",
    "Not bad, not great, the handle gets hot after a few minutes",
    "Absolutely love this blender, it is SO quiet",
    "Honestly the worst purchase I have made this year",
    "I was not happy with the delivery, the box was damaged",
    "Works perfectly, my family uses it every day",
    "The instructions were kind of confusing but setup was easy",
    "It is at least better than the old one",
    "This is the least reliable toaster I have ever owned",
    "Customer service was extremely helpful and friendly",
    "No problems so far after {n} weeks",
    "Never been this happy with a kitchen gadget",
    "Without a doubt the best coffee maker on the market",
    "Stopped working after {n} uses, very disappointed",
    "Pretty good for the price, would recommend",
    "The display is hard to read and the buttons are tiny",
    "Yeah right, 'waterproof' my foot",
    "Battery life is amazing, lasts {n} days",
    "It's okay I guess, nothing special",
    "Really really bad smell when heating up",
    "I can't say I'm impressed",
    "Looks nice, feels solid, does the job",
    "Returned it, refund took {n} days :(",
    "Best gift ever, my mum loves it :D",
    "Why does it beep so loudly??",
    "Cheap plastic, cracked within a month!!",
    "Not the best, but not the worst either",
    "The app is buggy and crashes constantly",
    "Super easy to clean, dishwasher safe",
    "Fantastic product, fast shipping, thank you!",
    "Meh. It works. Kinda noisy though",
    "Order {n} arrived broken, replacement was fine",
    "I hate that the cord is so short",
    "Nothing to complain about",
    "Somewhat useful but overpriced at {p}",
    "The motor is VERY loud and the lid doesn't seal",
    "Good grief, what a waste of money",
    "Totally worth it, no regrets",
]
FR = [
    "Bouilloire rapide et silencieuse, je recommande",
    "Commande n° {n} reçue en 48h, très satisfait",
    "Produit décevant, le couvercle ne ferme pas",
    "Bon rapport qualité prix, livraison rapide",
    "Le service client est nul, aucune réponse depuis {n} jours",
]
DE = [
    "Der Wasserkocher ist laut und nach {n} Tagen kaputt",
    "Sehr enttäuscht, Rückgabe läuft",
    "Super Qualität, schnelle Lieferung, gerne wieder",
    "Funktioniert einwandfrei, klare Kaufempfehlung",
    "Preis von {p} ist zu hoch für diese Qualität",
]
EMOJI = ["😍", "👍", "😡", "💔", "🙂", "😂", "🔥", "👎"]
ENDINGS = [".", ".", ".", "!", "!!", "!!!", "?", "??", "...", " :)", " :(", ""]


def realistic_texts(count: int, *, seed: int = 20261122) -> list[str]:
    """`count` unique review texts shaped as the pipeline scores them."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < count:
        pool = rng.choices([EN, FR, DE], weights=[8, 1, 1])[0]
        sentences = []
        for _ in range(rng.choice([1, 1, 2, 2, 3, 3, 4, 5, 6, 8, 12])):
            sentence = rng.choice(pool).format(
                n=rng.randint(2, 99999), p=f"{rng.randint(5, 300)}.{rng.randint(0, 99):02d}"
            )
            if rng.random() < 0.05:
                sentence = sentence.upper()
            sentence += rng.choice(ENDINGS)
            if rng.random() < 0.05:
                sentence += " " + rng.choice(EMOJI)
            sentences.append(sentence)
        text = (rng.choice(TITLES) + ". " + " ".join(sentences))[:MAX_CHARS]
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def pipeline_bench_texts(count: int) -> list[str]:
    """The texts bench/cdc_processor/run.py's reviews are scored on ("Review. " + body),
    read as a literal: importing that script would start building the app."""
    tree = ast.parse((Path(__file__).parent / "run.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "BODIES" for t in node.targets
        ):
            bodies: list[str] = ast.literal_eval(node.value)
            return ["Review. " + bodies[i % len(bodies)].format(n=i) for i in range(count)]
    raise SystemExit("BODIES not found in bench/cdc_processor/run.py")


class ReferenceScorer(SentimentScorer):
    """SentimentScorer as it was before vader_fast: vaderSentiment's polarity_scores."""

    def __init__(self, analyzer: SentimentIntensityAnalyzer) -> None:
        super().__init__(max_chars=MAX_CHARS)
        self._analyzer = analyzer

    def _score(self, text: str) -> Sentiment:
        compound = float(self._analyzer.polarity_scores(text)["compound"])
        compound = round(max(-1.0, min(1.0, compound)), 4)
        if compound >= 0.05:
            return Sentiment(compound, SentimentLabel.POSITIVE)
        if compound <= -0.05:
            return Sentiment(compound, SentimentLabel.NEGATIVE)
        return Sentiment(compound, SentimentLabel.NEUTRAL)


def per_text_us(fn: Callable[[str], object], texts: list[str]) -> float:
    start = time.perf_counter()
    for text in texts:
        fn(text)
    return (time.perf_counter() - start) / len(texts) * 1e6


def figure(name: str, fast_us: float, reference_us: float, exact: bool) -> dict[str, object]:
    ratio = fast_us / reference_us
    return {
        "name": name,
        "value": round(fast_us, 2),
        "unit": "us/text",
        "baseline": round(reference_us, 2),
        "ratio": round(ratio, 4),
        "target": "<= 0.333x baseline (>= 3x faster), identical compound on every text",
        "pass": exact and ratio <= TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="300 texts, 1 round")
    args = parser.parse_args()
    n_texts, rounds = (300, 1) if args.quick else (args.texts, args.rounds)

    texts = realistic_texts(n_texts)
    short = pipeline_bench_texts(n_texts)
    analyzer = SentimentIntensityAnalyzer()
    fast = VaderCompound(analyzer)
    mismatches = [
        t for t in texts + short if analyzer.polarity_scores(t)["compound"] != fast.compound(t)
    ]
    exact = not mismatches
    chars = sum(map(len, texts)) / len(texts)
    short_chars = sum(map(len, short)) / len(short)
    print(
        f"{len(texts)} unique texts, mean {chars:.0f} chars, and {len(short)} run.py texts, "
        f"mean {short_chars:.0f} chars; mismatches: {len(mismatches)}"
    )
    for text in mismatches[:5]:
        print("  MISMATCH:", repr(text))

    ref_c, fast_c, ref_s, fast_s, ref_p, fast_p = [], [], [], [], [], []
    for r in range(rounds):
        ref_c.append(per_text_us(analyzer.polarity_scores, texts))
        fast_c.append(per_text_us(fast.compound, texts))
        # Fresh scorers each round: the texts are unique, so every call is a memo miss.
        ref_s.append(per_text_us(ReferenceScorer(analyzer).score, texts))
        fast_s.append(per_text_us(SentimentScorer(max_chars=MAX_CHARS).score, texts))
        ref_p.append(per_text_us(analyzer.polarity_scores, short))
        fast_p.append(per_text_us(fast.compound, short))
        print(
            f"round {r + 1}: compound ref {ref_c[-1]:.1f} fast {fast_c[-1]:.1f} us/text; "
            f"scorer ref {ref_s[-1]:.1f} fast {fast_s[-1]:.1f} us/text; "
            f"run.py texts ref {ref_p[-1]:.1f} fast {fast_p[-1]:.1f} us/text"
        )
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    sides = (
        ("compound", fast_c, ref_c),
        ("SentimentScorer.score", fast_s, ref_s),
        ("compound, run.py texts", fast_p, ref_p),
    )
    for name, f, b in sides:
        print(f"{name}: best {min(f):.1f} vs {min(b):.1f} us/text -> {min(b) / min(f):.1f}x faster")
    figures = [
        figure("VADER compound per unique review text", min(fast_c), min(ref_c), exact),
        figure("SentimentScorer.score per unique review text", min(fast_s), min(ref_s), exact),
        figure("VADER compound per run.py review text", min(fast_p), min(ref_p), exact),
    ]
    print(json.dumps({"figures": figures}))


if __name__ == "__main__":
    main()
