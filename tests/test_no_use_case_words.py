"""No use case's words in the general code: components/, serving/ and the esteira core.

The words are every use case's directory name (``feature_repo/<use case>/``) and every
column name of every contract (``feature_repo/*/dataset.yaml``). A name with an underscore
(``store_id``, ``error_count``, a use case's name) may not appear anywhere in a file, not
even inside a longer identifier, a string or a comment. A one-word column name (``price``,
``volt``) may not be a string literal of its own (``frame["price"]``); a few one-word column
names are also the code's own vocabulary and are allowed (listed with the reason); as an
identifier a one-word name is the code's own (``self.failure``, an SVG's ``rotate``).
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import yaml

from esteira.config import ROOT

SCANNED = ("components", "serving", "esteira")
# one-word column names that are also the code's own words, in its own meaning
OWN_VOCABULARY = {
    "model": "the `model` settings section, KServe's model",
    "date": "datetime.date in the unpickler's allowlist",
    "category": "the feature kind of string features",
    "timestamp": "the contract's own key word (`timestamp:`)",
}
PENDING: dict[str, set[str]] = {}  # file -> words it may still name, while being made general


def _words() -> tuple[set[str], set[str]]:
    use_cases = {p.parent.name for p in (ROOT / "feature_repo").glob("*/usecase.yaml")}
    columns: set[str] = set()
    for path in (ROOT / "feature_repo").glob("*/dataset.yaml"):
        columns |= set(yaml.safe_load(path.read_text())["columns"])
    return use_cases, columns


def _files() -> list[Path]:
    return sorted(
        p
        for top in SCANNED
        for p in (ROOT / top).rglob("*.py")
        if "tests" not in p.relative_to(ROOT).parts
    )


def found_in(text: str, use_cases: set[str], columns: set[str]) -> set[str]:
    hits = {w for w in use_cases | columns if "_" in w and w in text}
    single = {w for w in columns if "_" not in w and w not in OWN_VOCABULARY}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.STRING:
            body = re.sub(
                r"^[rbuf]*('''|\"\"\"|'|\")|('''|\"\"\"|'|\")$", "", tok.string, flags=re.I
            )
            if body in single:
                hits.add(body)
    return hits


def test_the_words_come_from_every_contract() -> None:
    use_cases, columns = _words()
    assert {"predictive_maintenance", "demand_forecasting"} <= use_cases
    assert {"machine_id", "volt", "store_id", "item_id", "price"} <= columns
    assert found_in('x = "price"\ny = store_id\n', use_cases, columns) == {"price", "store_id"}
    assert found_in("price_ratio = price  # a price\n", use_cases, columns) == set()


def test_no_use_case_name_nor_column_name_in_general_code() -> None:
    use_cases, columns = _words()
    offenders = {}
    for path in _files():
        rel = path.relative_to(ROOT).as_posix()
        hits = found_in(path.read_text(), use_cases, columns)
        if hits != PENDING.get(rel, set()):
            offenders[rel] = sorted(hits)
    assert offenders == {}, (
        "use-case words in general code (take them from the contract or the settings; "
        "a file cleaned of PENDING words leaves PENDING too)"
    )
