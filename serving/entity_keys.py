"""The entity's join keys on the wire, shared by the transformer and the predictor.

A use case's entity has one join key or several (a composite key), each an ``int`` or a
``string`` column of its contract. The transformer takes one value per key and row, and
passes the keys to the predictor as request parameters named ``<key>s`` (the plural of the
key), so the prediction log knows the entity; they are never features:

* V1: ``"parameters": {"<key>s": [7, 8]}``;
* V2: ``"parameters": {"<key>s": "[7, 8]"}``, a JSON array in a string, since V2 parameter
  values are scalars (a comma-separated list of integers is also accepted).

The transformer's V1 answer echoes them under the same names; its V2 answer has one output
per key, named after the key (INT64 or BYTES).
"""

from __future__ import annotations

from typing import Any

import orjson
from kserve.errors import InvalidInput

from esteira.errors import brief

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_KEY_CHARS = 256  # a string key longer than this is no id
DATATYPES = {"int": "INT64", "string": "BYTES"}


def plural(key: str) -> str:
    """The name a key's values go by in parameters and V1 answers."""
    return f"{key}s"


def key_value(value: Any, kind: str, where: str) -> int | str:
    """One join-key value, checked: a 64-bit integer for an ``int`` key (a float with an
    integral value is taken), a short non-empty UTF-8 string for a ``string`` key."""
    if kind == "string":
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"{where}: is not valid UTF-8") from None
        if not isinstance(value, str) or not value:
            raise InvalidInput(
                f"{where}: expected a non-empty string id, got {brief(value, 100)}"[:200]
            )
        if len(value) > MAX_KEY_CHARS:
            raise InvalidInput(
                f"{where}: an id of {len(value)} characters; at most {MAX_KEY_CHARS}"
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"{where}: is not valid Unicode (a lone surrogate)") from None
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise InvalidInput(f"{where}: expected an integer id, got {brief(value, 100)}"[:200])
    if not INT64_MIN <= value <= INT64_MAX:  # Feast's INT64 entity keys
        raise InvalidInput(f"{where}: id {value} is out of the 64-bit integer range")
    return value


def encode_parameter(values: list[Any]) -> str:
    """A key's values as a V2 parameter (a JSON array in a string)."""
    return orjson.dumps(values).decode()


def parse_parameter(value: Any, kind: str, rows: int, where: str) -> list[Any]:
    """A key's values from a request parameter (see the module doc), one per row."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise InvalidInput(f"{where}: is not a JSON array of ids") from None
        elif kind == "int":
            parts = [p.strip() for p in text.split(",") if p.strip()]
            if not all(p.lstrip("-").isdigit() for p in parts):
                raise InvalidInput(
                    f"{where}: expected comma-separated integers, got {brief(value, 100)}"[:200]
                )
            value = [int(p) for p in parts]
        else:
            value = [value]
    elif isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise InvalidInput(f"{where}: expected a list of ids, got {type(value).__name__}")
    if len(value) != rows:
        raise InvalidInput(f"{where}: has {len(value)} ids for {rows} rows; send one per row")
    if kind == "int" and any(isinstance(v, float) for v in value):
        raise InvalidInput(f"{where}: expected integer ids")
    return [key_value(v, kind, f"{where}[{i}]") for i, v in enumerate(value)]
