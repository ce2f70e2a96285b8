"""vader_fast must give exactly vaderSentiment's compound score, on every kind of text.

The reference is the installed vaderSentiment 3.3.2 (`polarity_scores`). Texts: the PII
corpus, the benchmark's review bodies, hand-written cases for every VADER rule, and seeded
random compositions of lexicon words, boosters, negations, idiom words, capitals,
punctuation, emoticons, emoji and odd whitespace. Scores are compared with `repr`, so even
0.0 vs -0.0 would count as a difference, both rounded (the contract) and unrounded.
"""

from __future__ import annotations

import ast
import json
import random
import subprocess
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pytest
from cdc_pii_corpus import CORPUS
from cdc_processor.sentiment import NEGATIVE_TO, POSITIVE_FROM, SentimentScorer
from cdc_processor.vader_fast import VaderCompound
from contracts.events import SentimentLabel
from vaderSentiment.vaderSentiment import (
    BOOSTER_DICT,
    NEGATE,
    SPECIAL_CASES,
    SentimentIntensityAnalyzer,
    SentiText,
    normalize,
)

REPO = Path(__file__).resolve().parents[3]
BENCH_RUN = REPO / "bench" / "cdc_processor" / "run.py"
SENTIMENT_BENCH = REPO / "bench" / "cdc_processor" / "sentiment_bench.py"


@cache
def analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


@cache
def fast() -> VaderCompound:
    return VaderCompound(analyzer())


def reference_unrounded(text: str) -> float:
    """vaderSentiment 3.3.2's `polarity_scores` up to (not including) its final rounding,
    made of the package's own methods; `test_reference_unrounded_is_faithful` checks it."""
    sia = analyzer()
    text_no_emoji = ""
    prev_space = True
    for char in text:
        if char in sia.emojis:
            if not prev_space:
                text_no_emoji += " "
            text_no_emoji += sia.emojis[char]
            prev_space = False
        else:
            text_no_emoji += char
            prev_space = char == " "
    text = text_no_emoji.strip()
    sentitext = SentiText(text)
    sentiments: list[float] = []
    words = sentitext.words_and_emoticons
    for i, item in enumerate(words):
        if item.lower() in BOOSTER_DICT:
            sentiments.append(0)
            continue
        if i < len(words) - 1 and item.lower() == "kind" and words[i + 1].lower() == "of":
            sentiments.append(0)
            continue
        sentiments = sia.sentiment_valence(0, sentitext, item, i, sentiments)
    sentiments = sia._but_check(words, sentiments)
    if not sentiments:
        return 0.0
    sum_s = float(sum(sentiments))
    amplifier = sia._punctuation_emphasis(text)
    if sum_s > 0:
        sum_s += amplifier
    elif sum_s < 0:
        sum_s -= amplifier
    return float(normalize(sum_s))


def mismatches(texts: Iterable[str]) -> list[tuple[str, float, float]]:
    out = []
    for text in texts:
        want = analyzer().polarity_scores(text)["compound"]
        got = fast().compound(text)
        if repr(want) != repr(got):
            out.append((text, want, got))
    return out


def unrounded_mismatches(texts: Iterable[str]) -> list[tuple[str, float, float]]:
    out = []
    for text in texts:
        want = reference_unrounded(text)
        got = fast().compound_unrounded(text)
        if repr(want) != repr(got):
            out.append((text, want, got))
    return out


# --- corpora ------------------------------------------------------------------------------


def pii_corpus_texts() -> list[str]:
    return [text for _lang, text, _expected in CORPUS]


def bench_bodies() -> list[str]:
    """BODIES from bench/cdc_processor/run.py, read as a literal (importing the script would
    pull in the whole app), formatted as the bench does and prefixed by its title."""
    tree = ast.parse(BENCH_RUN.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "BODIES" for t in node.targets
        ):
            bodies: list[str] = ast.literal_eval(node.value)
            return [
                "Review. " + body.format(n=n) for body in bodies for n in (0, 7, 42, 1234, 99999)
            ]
    raise AssertionError("BODIES not found in bench/cdc_processor/run.py")


WORDS_GOOD = ["good", "great", "love", "excellent", "helpful", "nice", "perfect", "happy"]
WORDS_BAD = ["bad", "terrible", "hate", "awful", "broken", "disappointed", "poor", "sux"]
SINGLE_BOOSTERS = sorted(k for k in BOOSTER_DICT if " " not in k)

DEMO = [
    "VADER is smart, handsome, and funny.",
    "VADER is smart, handsome, and funny!",
    "VADER is very smart, handsome, and funny.",
    "VADER is VERY SMART, handsome, and FUNNY.",
    "VADER is VERY SMART, handsome, and FUNNY!!!",
    "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!",
    "VADER is not smart, handsome, nor funny.",
    "The book was good.",
    "At least it isn't a horrible book.",
    "The book was only kind of good.",
    "The plot was good, but the characters are uncompelling and the dialog is not great.",
    "Today SUX!",
    "Today only kinda sux! But I'll get by, lol",
    "Make sure you :) or :D today!",
    "Catch utf-8 emoji such as 💘 and 💋 and 😁",
    "Not bad at all",
    "Sentiment analysis has never been good.",
    "Sentiment analysis has never been this good!",
    "Most automated sentiment analysis tools are shit.",
    "With VADER, sentiment analysis is the shit!",
    "Other sentiment analysis tools can be quite bad.",
    "On the other hand, VADER is quite bad ass",
    "VADER is such a badass!",
    "Without a doubt, excellent idea.",
    "Roger Dodger is one of the most compelling variations on this theme.",
    "Roger Dodger is at least compelling as a variation on the theme.",
    "Roger Dodger is one of the least compelling variations on this theme.",
    "Not such a badass after all.",
    "Without a doubt, an excellent idea.",
    "It was one of the worst movies I've seen, despite good reviews.",
    "Unbelievably bad acting!! Poor direction. VERY poor production.",
    "The movie was bad. Very bad movie. VERY BAD movie!",
]

EDGE = [
    "",
    " ",
    "   ",
    "\n",
    "\t\n ",
    "\xa0",
    "\u3000",
    "!",
    "!!!!!!",
    "?",
    "??",
    "???",
    "????",
    "?!?!",
    ":)",
    ":(",
    ":D",
    ":d",
    ":-D",
    ";)",
    "<3",
    "</3",
    ":'(",
    "XD",
    "xD",
    "(:",
    "):",
    "good",
    "GOOD",
    "Good",
    "gOOD",
    "g",
    "ok",
    "OK",
    "no",
    "NO",
    "No",
    "but",
    "BUT",
    "kind",
    "kind of",
    "least",
    "not",
    "never",
    "very",
    "VERY",
    "so",
    "the shit",
    "bad ass",
    "good.",
    "'good'",
    '"good"',
    "...good...",
    "--bad--",
    "(great)",
    "[hate]",
    "a!",
    "b?",
    "good!!!!!!!!",
    "bad??",
    "bad???",
    "bad????",
    "good !",
    "good ! ! ! ! !",
    "good\tbad",
    "good\nbad",
    "good\xa0bad",
    "good\u2003bad",
    "good\u200bbad",
    "good  \n  bad",
    "😁",
    "😁😁",
    "a😁",
    "😁a",
    "a 😁 b",
    "😁 😁",
    " 😁",
    "💘💋😁",
    "👍🏽",
    "©",
    "®",
    "™",
    "good ©",
    "❗ good",
    "🆙 nice",
    "🔛 nice",
    "‼ good",
    "⁉ bad",
    "〰 ok",
    "ℹ info",
    "Très bien, j'adore !",
    "Sehr gut, ich liebe es!",
    "Μου αρέσει ΠΟΛΥ, ΤΕΛΕΙΟΣ",
    "İYİ good",
    "\u212a good",
    "ＧＯＯＤ product",
    "good café",
    "NAÏVE design, LOVE it",
    "ǅ good",
    "ﬀ good",
]


def rule_cases() -> list[str]:
    """Hand-written cases that drive each rule of VADER, alone and in combination."""
    cases = list(DEMO) + list(EDGE)
    # Negation one, two and three words before a lexicon word; "n't" forms.
    for neg in [*NEGATE, "isn't", "wasn't", "don't", "can't", "shouldn't", "NOT", "Never"]:
        cases.append(f"it is {neg} good")
        cases.append(f"{neg} a good product")
        cases.append(f"this is {neg} really that bad")
        cases.append(f"{neg} it at all good!")
    # Boosters and dampeners before positive/negative words, at distance 1-3, in capitals.
    for i, booster in enumerate(SINGLE_BOOSTERS):
        good, bad = WORDS_GOOD[i % 8], WORDS_BAD[i % 8]
        cases.append(f"this is {booster} {good}")
        cases.append(f"{booster} {bad} stuff")
        cases.append(f"it was {booster.upper()} {good}, yes")
        cases.append(f"{booster} the {bad} one")
        cases.append(f"{booster} the old {good} one")
        cases.append(f"{booster.upper()} IS {bad.upper()}")
    # Multi-word dampeners, "kind of" (kind is itself a lexicon word).
    cases += [
        "kind of good",
        "it was kind of bad",
        "kind of",
        "he is kind",
        "so kind of you",
        "kind",
        "kind kind of",
        "KIND OF GREAT",
        "a kind of good day",
        "it is kind of a bad idea",
        "sort of good",
        "it is sort of bad",
        "the sort of good one",
        "just enough good",
        "it was just enough bad",
        "it was just enough",
        "very kind of good",
        "not kind of good",
    ]
    # ALL CAPS emphasis: some but not all tokens in capitals; all capitals (no emphasis).
    for good, bad in zip(WORDS_GOOD, WORDS_BAD, strict=True):
        cases += [
            f"This is {good.upper()}",
            f"THIS IS {good.upper()}",
            f"this is {good.title()}",
            f"{bad.upper()} product",
            f"VERY {good} indeed",
            f"very {bad.upper()} thing",
            f"NOT {good.upper()} at all",
            f"It IS {bad}!!",
            f"{good.upper()} but {bad.upper()}",
        ]
    # "but": before/after, repeated, several times, repeated equal scores.
    cases += [
        "good but bad",
        "bad but good",
        "good good but bad bad",
        "good but good",
        "good but bad but good",
        "but good",
        "good but",
        "BUT it is good",
        "good, but bad",
        "it was great but, the lid is bad and the handle is bad",
        "good bad but good bad",
        "great but great great great",
        "nice nice nice but nice",
        "bad but",
        "But nothing",
        "good butter",
        "good but. bad",
        "good BUT bad",
        "But, honestly, great",
    ]
    # "least": "at least", "very least", "least" first and second.
    cases += [
        "least good",
        "the least good",
        "at least good",
        "very least good",
        "LEAST good",
        "it is the least bad",
        "at least it works and is good",
        "least",
        "good least",
        "at the least good",
        "AT LEAST GOOD",
        "not least good",
        "least least good",
    ]
    # "no": before a lexicon word, alone, two/three words before, with or/nor.
    cases += [
        "no good",
        "no",
        "no problems",
        "no no no",
        "no way good",
        "no x good",
        "no x y good",
        "no good or bad",
        "no money or fun",
        "no money nor fun",
        "no x or good",
        "no x nor bad",
        "NO GOOD",
        "No, good",
        "good no",
        "no love",
        "there is no hope",
        "no wonder it broke",
        "no. good",
        "NO problems at all!",
        "no bad no good no",
    ]
    # never so / never this / without doubt, at distance two and three.
    cases += [
        "never so good",
        "never this good",
        "never so very good",
        "never this bad",
        "never been so good",
        "never good",
        "never ever good",
        "so good",
        "this good",
        "without doubt good",
        "without a doubt good",
        "without doubt a good",
        "without good",
        "without any doubt good",
        "doubt good",
        "never so",
        "it never was this good",
    ]
    # Special-case idioms and sentiment-laden phrases around lexicon words.
    for idiom in SPECIAL_CASES:
        cases += [
            f"{idiom}",
            f"this is {idiom}",
            f"{idiom} indeed good",
            f"wow {idiom}!",
            f"really {idiom}",
            f"not {idiom}",
            f"{idiom.upper()} today",
            f"the x {idiom}",
            f"good x y {idiom}",
            f"{idiom} good bad",
        ]
    cases += [
        "cut the mustard",
        "hand to mouth",
        "in the red",
        "under the weather",
        "break a leg",
        "the shit is bad",
        "a beating heart",
        "kiss of death bad",
        "cake to die for",
        "the bus stop was good",
        "yeah right great",
        "the bomb",
        "this is bad ass good",
        "kind of the bomb",
        "sort of the shit",
    ]
    # Punctuation emphasis on positive, negative and neutral texts.
    for marks in ["", "!", "!!", "!!!", "!!!!", "!!!!!", "?", "??", "???", "????", "?!", "!?!?"]:
        cases += [f"good{marks}", f"bad{marks}", f"the table{marks}", f"good but bad{marks}"]
    # Emoticons and emoji next to words.
    cases += [
        "great :)",
        "bad :(",
        "great :D",
        "terrible :-(",
        "love it <3",
        "broke </3",
        "great 👍",
        "broken 👎",
        "love it 😍😍😍",
        "angry 😡!",
        "ok🙂",
        "🙂ok",
        "meh 😐",
        "I 💔 this",
        "fire 🔥🔥 product",
        "😂😂😂 so bad",
        "good 😁 but 😡",
    ]
    return cases


VOCAB_RULES = [
    "no",
    "not",
    "never",
    "but",
    "least",
    "at",
    "very",
    "so",
    "this",
    "without",
    "doubt",
    "or",
    "nor",
    "kind",
    "of",
    "sort",
    "just",
    "enough",
    "the",
    "a",
    "it",
    "is",
    "to",
    "die",
    "for",
    "bus",
    "stop",
    "yeah",
    "right",
    "kiss",
    "death",
    "beating",
    "heart",
    "bomb",
    "shit",
    "bad",
    "ass",
    "isn't",
    "don't",
    "can't",
    "won't",
    "uh-uh",
    "nope",
]
EMOJI = ["😁", "💘", "💋", "👍", "👎", "😡", "🔥", "©", "®", "❗", "🆙", "‼", "⁉", "👍🏽"]
ATTACH = ["", "", "", "", "!", "?", ".", ",", "!!", "...", "'", ":)", "?!"]
SEPARATORS = [" ", " ", " ", " ", " ", "  ", "\t", "\n", "\xa0", " , "]


def random_texts(count: int, *, seed: int) -> list[str]:
    rng = random.Random(seed)
    lexicon = sorted(analyzer().lexicon)
    boosters = [*SINGLE_BOOSTERS, "kind of", "sort of", "just enough"]
    pools = [lexicon, boosters, NEGATE, VOCAB_RULES, EMOJI]
    weights = [40, 15, 12, 28, 5]
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.choice([0, 1, 2, 3, 4, 5, 6, 8, 10, 14, 20, 30])):
            word = rng.choice(rng.choices(pools, weights=weights)[0])
            shape = rng.random()
            if shape < 0.12:
                word = word.upper()
            elif shape < 0.18:
                word = word.title()
            if rng.random() < 0.1:
                word = rng.choice(["'", '"', "(", "--", "*"]) + word
            parts.append(word + rng.choice(ATTACH))
            parts.append(rng.choice(SEPARATORS))
        text = "".join(parts)
        if rng.random() < 0.2:
            text += rng.choice(["!", "!!!", "?", "??", "???", "!!!!!!", "?!?", " :)", " 😁"])
        texts.append(text)
    return texts


# --- exactness ------------------------------------------------------------------------------


def test_reference_unrounded_is_faithful_to_polarity_scores() -> None:
    texts = rule_cases() + random_texts(500, seed=7)
    wrong = [
        t
        for t in texts
        if round(reference_unrounded(t), 4) != analyzer().polarity_scores(t)["compound"]
    ]
    assert wrong == []


def test_matches_vader_on_pii_corpus_texts() -> None:
    texts = pii_corpus_texts()
    assert len(texts) >= 200
    assert mismatches(texts) == []
    assert unrounded_mismatches(texts) == []


def test_matches_vader_on_benchmark_review_bodies() -> None:
    texts = bench_bodies()
    assert mismatches(texts) == []
    assert unrounded_mismatches(texts) == []


def test_matches_vader_on_handwritten_rule_cases() -> None:
    texts = rule_cases()
    assert len(texts) >= 500
    assert mismatches(texts) == []
    assert unrounded_mismatches(texts) == []


def test_matches_vader_on_seeded_random_compositions() -> None:
    texts = random_texts(6000, seed=20261122)
    assert mismatches(texts) == []
    assert unrounded_mismatches(texts) == []


def test_corpora_exercise_the_rules() -> None:
    # Guards the corpora from drifting into texts that score 0 whatever the code does.
    scores = [analyzer().polarity_scores(t)["compound"] for t in rule_cases()]
    assert sum(1 for s in scores if s != 0) > 0.7 * len(scores)
    random_scores = {analyzer().polarity_scores(t)["compound"] for t in random_texts(500, seed=1)}
    assert len(random_scores) > 300


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("not good", "good"),
        ("good", "very good"),
        ("good", "GOOD product"),
        ("good", "good!!!"),
        ("good but bad", "bad but good"),
        ("least good", "at least good"),
        ("no good", "good"),
        ("never so bad", "bad"),  # "so" boosts, "never so" amplifies by 1.25
        ("it was kind of good", "it was good"),  # n-grams count from the 4th token
        ("a bomb", "it is the bomb"),  # special-case idiom
        (":(", ":)"),
        ("😡", "😍"),  # emoji become their descriptions
    ],
)
def test_rules_move_the_score_the_way_vader_says(lower: str, higher: str) -> None:
    assert fast().compound(lower) < fast().compound(higher)


def test_known_vader_scores() -> None:
    # Published examples from the vaderSentiment README.
    assert fast().compound("VADER is smart, handsome, and funny.") == 0.8316
    assert fast().compound("VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!") == 0.9469
    assert fast().compound("Not bad at all") == 0.431
    assert fast().compound("Today SUX!") == -0.5461


# --- the scorer ------------------------------------------------------------------------------


def test_scorer_matches_the_vader_based_scorer_on_long_and_blank_texts() -> None:
    scorer = SentimentScorer(max_chars=1000, memo_size=64)
    long_texts = [" ".join(bench_bodies()[i : i + 30]) for i in range(0, 30)]  # > 1000 chars
    texts = long_texts + rule_cases() + random_texts(300, seed=3)
    assert any(len(t) > 1000 for t in texts)
    for text in texts:
        got = scorer.score(text)
        if not text.strip():
            want_score, want_label = 0.0, SentimentLabel.NEUTRAL
        else:
            compound = analyzer().polarity_scores(text[:1000])["compound"]
            want_score = round(max(-1.0, min(1.0, compound)), 4)
            want_label = (
                SentimentLabel.POSITIVE
                if want_score >= POSITIVE_FROM
                else SentimentLabel.NEGATIVE
                if want_score <= NEGATIVE_TO
                else SentimentLabel.NEUTRAL
            )
        assert (repr(got.score), got.label) == (repr(want_score), want_label), text


def test_scorer_memo_is_bounded_and_drops_the_oldest_text_first() -> None:
    scorer = SentimentScorer(memo_size=3)
    first = scorer.score("good one")
    assert scorer.score("good one") is first  # a repeat is a memo hit
    for text in ("bad two", "nice three", "awful four"):
        scorer.score(text)
    assert list(scorer._memo) == ["bad two", "nice three", "awful four"]
    assert scorer.score("good one") is not first  # evicted, scored again
    assert scorer.score("good one") == first
    assert len(scorer._memo) == 3


def test_sentiment_bench_runs_and_reports_exact_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(SENTIMENT_BENCH), "--texts", "200", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=True,
    )
    assert "mismatches: 0" in done.stdout
    result = json.loads(done.stdout.strip().splitlines()[-1])
    names = [f["name"] for f in result["figures"]]
    assert names == [
        "VADER compound per unique review text",
        "SentimentScorer.score per unique review text",
        "VADER compound per run.py review text",
    ]
    assert all(f["value"] > 0 and f["baseline"] > 0 for f in result["figures"])
