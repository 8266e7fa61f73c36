"""A seeded generator of labelled product reviews (the sentiment analysis demo data).

One row per review: the ``product_id`` it is about, when it was posted (``reviewed_at``), the
product's ``category``, the ``stars`` the reviewer gave, the free ``review_text`` and its
``sentiment`` label (1 positive, 0 negative). Nothing is downloaded: every sentence is built
here from small phrase lists, fully determined by the seed.

Products
    ``products`` products in five categories, each with a latent quality q ~ Normal(0, 1.1):
    a review of the product is positive with probability sigmoid(0.4 + q), so a product's
    past ratings (its rolling average and review count, from Feast) tell something about
    the next review. Each product gets reviews at its own rate (lognormal around
    ``reviews_per_day``), at random seconds, never two at the same second.

What makes a bag-of-words model fall well short of 100 %
    * **negation**: "not great", "never worked", "can't complain", "not bad at all";
    * **mixed reviews** (35 %): a clause of the other polarity next to the review's own,
      "the battery is great but the screen cracked" (the clause after *but* wins), or
      "although the lid is flimsy, I love it";
    * **sarcasm** (4 % of negative reviews): positive words, negative meaning
      ("Great, another charger that died in a week");
    * **typos**: each word of 3+ letters is misspelt with probability 4 % (swap, drop or
      double a letter), so word n-grams miss and character n-grams must catch them;
    * **varied length**: from one word ("Meh.") to eight sentences with neutral filler
      ("Arrived on Tuesday.");
    * **loan words** (15 % of reviews): Portuguese, Spanish, French and German words
      ("muito bom", "kaputt", "nul", "genial") inside English text;
    * **weak words** in both polarities ("okay", "fine", "expected").

Label noise (documented, fixed: ``LABEL_NOISE``)
    The ``sentiment`` column is the review's true polarity flipped for 7 % of the reviews
    (a hurried annotator). The ``stars`` follow the true polarity (positive: 4-5, negative:
    1-2, a mixed review one star closer to 3), so they disagree with the label exactly on
    the flipped rows. No model can beat about 93 % accuracy on these labels; with the hard
    cases above a word and character TF-IDF model lands well below that.

Periods
    ``period="stable"`` is the same process later in time with another seed.
    ``period="drifted"`` is what a shop sees after a product-line change: reviewers write
    in new slang ("mid", "no cap", "sus", "bussin") and about new aspects (firmware,
    subscription), reviews are longer, and product quality dips (q - 0.9), so more
    reviews are negative: the text's length, its out-of-vocabulary rate and the mix of
    predicted classes all move.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LABEL_NOISE = 0.07  # share of reviews whose sentiment label is flipped (documented above)
TYPO_RATE = 0.04  # per word of three letters or more
MIXED_SHARE = 0.35
LOAN_SHARE = 0.15
SARCASM_SHARE = 0.04  # of negative reviews
PERIODS = ("normal", "stable", "drifted")
EPOCH = pd.Timestamp("2020-01-01", tz="UTC")
COLUMNS = ["reviewed_at", "product_id", "category", "stars", "review_text", "sentiment"]

CATEGORIES = {
    "electronics": ["battery", "screen", "charger", "sound", "camera", "app", "cable", "remote"],
    "kitchen": ["blender", "lid", "handle", "blade", "coating", "motor", "pan", "kettle"],
    "books": ["plot", "characters", "ending", "writing", "pacing", "cover", "story", "dialogue"],
    "toys": ["pieces", "colors", "instructions", "box", "assembly", "wheels", "puzzle", "doll"],
    "apparel": ["fabric", "fit", "stitching", "size", "color", "zipper", "sleeves", "collar"],
}
DRIFT_ASPECTS = ["firmware update", "subscription", "companion app", "cloud sync", "login"]

POS_ADJ = ["great", "excellent", "amazing", "solid", "perfect", "sturdy", "reliable", "lovely",
           "fantastic", "comfortable", "brilliant", "superb", "wonderful", "awesome", "good"]  # fmt: skip
NEG_ADJ = ["terrible", "awful", "flimsy", "useless", "disappointing", "cheap", "poor", "horrible",
           "faulty", "bad", "mediocre", "defective", "weak", "lousy", "dreadful"]  # fmt: skip
WEAK_POS = ["okay", "fine", "decent", "as expected", "alright"]
WEAK_NEG = ["meh", "underwhelming", "not as expected", "so-so", "forgettable"]
POS_PHRASES = ["works like a charm", "exceeded my expectations", "would buy again",
               "highly recommend it", "worth every penny", "does exactly what it says",
               "my kids love it", "five stars from me", "best purchase this year",
               "very happy with it"]  # fmt: skip
NEG_PHRASES = ["stopped working after a week", "fell apart", "waste of money", "I returned it",
               "do not recommend it", "broke on day two", "arrived damaged",
               "support never answered", "want my money back", "regret buying it"]  # fmt: skip
NEG_EVENTS = ["died in a week", "broke the first day", "fell apart in the wash",
              "stopped charging", "cracked out of the box"]  # fmt: skip
# negated words of one polarity that mean the other
NEGATED_POS = ["not great", "not worth it", "never worked properly", "not good at all",
               "nothing special", "hardly usable", "not reliable", "no longer works"]  # fmt: skip
NEGATED_NEG = ["not bad at all", "can't complain", "never had a problem", "no issues so far",
               "nothing to complain about", "not disappointed", "never lets me down"]  # fmt: skip
LOAN_POS = ["muito bom", "top", "genial", "perfecto", "très bien", "wunderbar", "bom demais",
            "super", "magnifique", "excelente"]  # fmt: skip
LOAN_NEG = ["ruim", "malo", "kaputt", "nul", "schlecht", "péssimo", "horrível", "mierda",
            "nicht gut", "pas terrible"]  # fmt: skip
SLANG_POS = ["bussin", "no cap it slaps", "lowkey fire", "goated", "a whole vibe"]
SLANG_NEG = ["mid", "kinda sus", "straight trash", "big L", "ratio'd by the competition"]
FILLER = ["I bought this for my sister.", "Arrived on Tuesday.", "The package came in a box.",
          "I have had it for two months now.", "Ordered it during the sale.",
          "This is my second one.", "My husband picked the color.", "Delivery took four days.",
          "I use it every morning.", "Got it as a birthday present."]  # fmt: skip
SHORT_POS = ["Great!", "Love it.", "Perfect.", "Excellent.", "Top!", "Recommended."]
SHORT_NEG = ["Awful.", "Meh.", "Junk.", "Broken.", "Avoid.", "Nope."]


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _clause(rng: np.random.Generator, positive: bool, aspects: list[str], slang: bool) -> str:
    """One opinion of the given polarity about an aspect, in one of several shapes."""
    aspect = _pick(rng, aspects)
    shape = rng.random()
    if slang and rng.random() < 0.4:
        return f"the {aspect} is {_pick(rng, SLANG_POS if positive else SLANG_NEG)}"
    if shape < 0.35:
        return f"the {aspect} is {_pick(rng, POS_ADJ if positive else NEG_ADJ)}"
    if shape < 0.55:
        return _pick(rng, POS_PHRASES if positive else NEG_PHRASES)
    if shape < 0.75:  # negation: the other polarity's words, negated
        return f"the {aspect} is {_pick(rng, NEGATED_NEG if positive else NEGATED_POS)}"
    if shape < 0.9:
        return f"the {aspect} is {_pick(rng, WEAK_POS if positive else WEAK_NEG)}"
    return f"{_pick(rng, POS_ADJ if positive else NEG_ADJ)} {aspect}"


def _typos(rng: np.random.Generator, text: str) -> str:
    words = text.split(" ")
    for i, word in enumerate(words):
        if len(word) < 3 or rng.random() >= TYPO_RATE:
            continue
        j = int(rng.integers(1, len(word) - 1))
        kind = rng.integers(3)
        if kind == 0:  # swap two letters
            word = word[: j - 1] + word[j] + word[j - 1] + word[j + 1 :]
        elif kind == 1:  # drop one
            word = word[:j] + word[j + 1 :]
        else:  # double one
            word = word[:j] + word[j] + word[j:]
        words[i] = word
    return " ".join(words)


def _sentence(clause: str) -> str:
    return clause[0].upper() + clause[1:] + "."


def _review(
    rng: np.random.Generator, positive: bool, aspects: list[str], drifted: bool
) -> tuple[str, bool]:
    """(text, mixed) of one review whose true polarity is ``positive``."""
    if rng.random() < (0.04 if drifted else 0.08):  # one word
        return _pick(rng, SHORT_POS if positive else SHORT_NEG), False
    if not positive and rng.random() < SARCASM_SHARE:
        aspect = _pick(rng, aspects)
        opener = _pick(rng, ["Great", "Wonderful", "Just perfect", "Amazing"])
        return f"{opener}, another {aspect} that {_pick(rng, NEG_EVENTS)}.", False
    sentences: list[str] = []
    mixed = rng.random() < MIXED_SHARE
    opinions = int(rng.geometric(0.7 if not drifted else 0.5))
    for _ in range(min(opinions, 4)):
        sentences.append(_sentence(_clause(rng, positive, aspects, drifted)))
    if mixed:  # the other polarity, then the review's own (the last word wins)
        other = _clause(rng, not positive, aspects, drifted)
        if rng.random() < 0.5:  # the other side has its say at length
            sentences.append(_sentence(_clause(rng, not positive, aspects, drifted)))
        own = _clause(rng, positive, aspects, drifted)
        if rng.random() < 0.6:
            sentences.insert(0, _sentence(f"{other}, but {own}"))
        else:
            overall = "overall I love it" if positive else "overall I am not happy"
            sentences.insert(0, _sentence(f"although {other}, {overall}"))
    if rng.random() < LOAN_SHARE:
        loan = _pick(rng, LOAN_POS if positive else LOAN_NEG)
        sentences.append(loan.capitalize() + "!")
    fillers = int(rng.poisson(2.0 if drifted else 0.8))
    for _ in range(min(fillers, 4)):
        sentences.insert(int(rng.integers(len(sentences) + 1)), _pick(rng, FILLER))
    order = rng.permutation(len(sentences)) if rng.random() < 0.3 else range(len(sentences))
    return _typos(rng, " ".join(sentences[i] for i in order)), mixed


def _population(seed: int, products: int) -> dict[str, np.ndarray]:
    """Every product's fixed parameters: the seed alone decides them."""
    rng = np.random.default_rng([seed, 0])
    return {
        "category": rng.integers(len(CATEGORIES), size=products),
        "quality": rng.normal(0.0, 1.1, products),
        "rate": rng.lognormal(0.0, 0.6, products),
    }


def generate(
    products: int = 300,
    reviews_per_day: float = 0.1,
    days: int = 365,
    start: str = "2025-01-01",
    seed: int = 42,
    period: str = "normal",
) -> pd.DataFrame:
    """Reviews of ``products`` products over ``days`` days, fully determined by ``seed``.

    ``reviews_per_day``: the mean rate of reviews per product and day."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
    if products < 1 or days < 1 or reviews_per_day <= 0:
        raise ValueError("products and days must be >= 1 and reviews_per_day > 0")
    first = pd.Timestamp(start, tz="UTC")
    day0 = int((first - EPOCH).days)
    pop = _population(seed, products)
    rng = np.random.default_rng([seed, 1, day0, PERIODS.index(period)])
    drifted = period == "drifted"
    names = list(CATEGORIES)
    counts = rng.poisson(pop["rate"] * reviews_per_day * days)
    seconds = days * 86_400
    rows: dict[str, list] = {c: [] for c in COLUMNS}
    for p in range(products):
        if counts[p] == 0:
            continue
        stamps = np.unique(rng.integers(0, seconds, counts[p]))  # one review per second
        category = names[pop["category"][p]]
        aspects = CATEGORIES[category] + (DRIFT_ASPECTS if drifted else [])
        quality = pop["quality"][p] - (0.9 if drifted else 0.0)
        for second in stamps:
            positive = bool(rng.random() < 1 / (1 + np.exp(-(0.4 + quality))))
            text, mixed = _review(rng, positive, aspects, drifted)
            stars = int(rng.integers(4, 6)) if positive else int(rng.integers(1, 3))
            if mixed:
                stars += -1 if positive else 1
            label = positive if rng.random() >= LABEL_NOISE else not positive
            rows["reviewed_at"].append(first + pd.Timedelta(seconds=int(second)))
            rows["product_id"].append(p + 1)
            rows["category"].append(category)
            rows["stars"].append(stars)
            rows["review_text"].append(text)
            rows["sentiment"].append(int(label))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["reviewed_at"] = pd.to_datetime(frame["reviewed_at"], utc=True)
    frame = frame.astype(
        {
            "product_id": "int64",
            "stars": "int64",
            "sentiment": "int64",
            "category": "string",
            "review_text": "string",
        }
    )
    return frame.sort_values(["reviewed_at", "product_id"], kind="stable").reset_index(drop=True)
