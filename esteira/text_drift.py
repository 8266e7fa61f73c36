"""Drift of request-time text (the contract's ``features.text``), as numbers drift is judged on.

A text is not a category (every review is new), so its drift is watched through signals
that :mod:`esteira.drift` compares like any numeric feature (PSI + KS):

* ``<feature>_chars``: the text's length in characters;
* ``<feature>_oov_rate``: the share of its words that are not in the vocabulary of the
  earlier half of the training rows (its ``VOCABULARY_SIZE`` most frequent words, stored with
  the version's drift reference): new slang, new products, another language raise it. The
  reference's rates are those of the later half of the training rows, so they are out of
  sample like the logged rows' (in sample, every word is known and the rate is 0).

Beside them, the mix of predicted classes (``prediction``, categorical) is compared with
the model's predictions on its training rows: a shift in what the model answers.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

VOCABULARY_SIZE = 20_000
PREDICTION = "prediction"
_WORD = re.compile(r"[^\W\d_]+")


def words(text: str) -> list[str]:
    """The lower-case words (runs of letters) of ``text``."""
    return _WORD.findall(str(text).lower())


def vocabulary(texts: Iterable[str], size: int = VOCABULARY_SIZE) -> list[str]:
    """The ``size`` most frequent words of ``texts`` (ties by word, so the list is stable)."""
    counts = Counter(w for t in texts for w in words(t))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [w for w, _ in ranked[:size]]


def signal_names(feature: str) -> list[str]:
    return [f"{feature}_chars", f"{feature}_oov_rate"]


def signals(texts: pd.Series, known: set[str]) -> pd.DataFrame:
    """Per text: its length and the share of its words outside ``known`` (NaN without words)."""
    values = texts.astype(object).fillna("").astype(str)
    split = [words(t) for t in values]
    oov = [sum(w not in known for w in ws) / len(ws) if ws else np.nan for ws in split]
    name = str(texts.name)
    return pd.DataFrame(
        {f"{name}_chars": values.str.len().to_numpy("float64"), f"{name}_oov_rate": oov},
        index=texts.index,
    )


def with_signals(
    frame: pd.DataFrame,
    features: list[str],
    text: list[str],
    vocabularies: dict[str, list[str]],
) -> tuple[pd.DataFrame, list[str]]:
    """``frame`` with each text feature's signals beside it, and ``features`` with every text
    feature replaced by its signals (in place, same order)."""
    extra = [
        signals(frame[name].rename(name), set(vocabularies.get(name, [])))
        for name in text
        if name in features
    ]
    out = pd.concat([frame, *extra], axis=1) if extra else frame
    names: list[str] = []
    for name in features:
        names += signal_names(name) if name in text else [name]
    return out, names


def reference_additions(
    model: Any, training: pd.DataFrame, features: list[str], text: list[str]
) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """What a version with text features adds to its drift reference: the training frame with
    the text signals (and the model's predicted class per row), the profiled columns, and the
    vocabularies (stored in ``reference.json`` under ``text_vocabulary``)."""
    half = len(training) // 2  # the training rows are in time order
    vocabularies = {name: vocabulary(training[name].iloc[:half]) for name in text}
    frame, names = with_signals(training, features, text, vocabularies)
    for name in text:  # in sample: every word known; the later half's rates are the reference
        frame.iloc[:half, frame.columns.get_loc(f"{name}_oov_rate")] = np.nan
    if callable(getattr(model, "predict", None)):
        predicted = np.asarray(model.predict(training[features])).astype(str)
        frame = frame.assign(**{PREDICTION: predicted})
        names = [*names, PREDICTION]
    return frame, names, {"text_vocabulary": vocabularies}


def current_frame(
    current: pd.DataFrame, features: list[str], text: list[str], reference: dict[str, Any]
) -> tuple[pd.DataFrame, list[str]]:
    """The logged rows and monitored features as the reference profiled them: text features as
    their signals, and the predicted class when the reference holds its mix."""
    frame, names = with_signals(current, features, text, reference.get("text_vocabulary", {}))
    if PREDICTION in reference.get("features", {}) and PREDICTION in frame.columns:
        frame = frame.assign(**{PREDICTION: frame[PREDICTION].astype("Int64").astype(str)})
        names = [*names, PREDICTION]
    return frame, names
