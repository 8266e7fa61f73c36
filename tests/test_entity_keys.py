"""The entity's join keys on the wire (serving/entity_keys.py) and in the transformer's parsers:
composite keys, string keys, and every client mistake as a 400 naming the field."""

from __future__ import annotations

import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest

from serving.entity_keys import encode_parameter, key_value, parse_parameter, plural
from serving.transformer import parse_v1, parse_v2, predictor_body

KEYS = {"shop": "string", "item_id": "int"}
FIELDS = ["price"]


def test_a_composite_key_with_a_string_part_parses_over_v1_and_v2() -> None:
    body = {"instances": [{"shop": "north", "item_id": 7, "price": 4.5},
                          {"shop": "süd", "item_id": 8.0, "price": 3}]}  # fmt: skip
    ids, values = parse_v1(body, KEYS, FIELDS, max_batch=10)
    assert ids == {"shop": ["north", "süd"], "item_id": [7, 8]}
    assert values == {"price": [4.5, 3.0]}

    request = InferRequest(
        "m",
        [
            InferInput("shop", [2], "BYTES", [b"north", "süd".encode()]),
            InferInput("item_id", [2], "INT64", [7, 8]),
            InferInput("price", [2], "FP64", [4.5, 3.0]),
        ],
    )
    assert parse_v2(request, KEYS, FIELDS, max_batch=10) == (ids, values)


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        ("", "string", "non-empty string"),
        ("x" * 300, "string", "at most 256"),
        (b"\xff\xfe", "string", "not valid UTF-8"),
        ("\ud800", "string", "lone surrogate"),
        (7, "string", "non-empty string"),
        ("7", "int", "integer id"),
        (True, "int", "integer id"),
        (1.5, "int", "integer id"),
        (2**63, "int", "64-bit"),
    ],
)
def test_a_bad_key_value_names_the_field_and_the_rule(value, kind, message) -> None:
    with pytest.raises(InvalidInput, match=message) as raised:
        key_value(value, kind, "instances[0].shop")
    assert "instances[0].shop" in str(raised.value)


def test_a_missing_or_unknown_key_is_named() -> None:
    with pytest.raises(InvalidInput, match=r"missing \['item_id'\]"):
        parse_v1({"instances": [{"shop": "a", "price": 1.0}]}, KEYS, FIELDS, 10)
    with pytest.raises(InvalidInput, match=r"unknown fields \['store'\]"):
        parse_v1({"instances": [{"shop": "a", "item_id": 1, "price": 1.0, "store": 2}]},
                 KEYS, FIELDS, 10)  # fmt: skip
    request = InferRequest("m", [InferInput("shop", [1], "INT64", [1]),
                                 InferInput("item_id", [1], "INT64", [1]),
                                 InferInput("price", [1], "FP64", [1.0])])  # fmt: skip
    with pytest.raises(InvalidInput, match=r"inputs\['shop'\].datatype: INT64 .* use BYTES"):
        parse_v2(request, KEYS, FIELDS, 10)


def test_keys_travel_to_the_predictor_as_parameters_and_back() -> None:
    ids = {"shop": ["a,b", "c"], "item_id": [1, 2]}  # a comma inside a string key survives
    v1 = predictor_body("v1", ["f"], {"f": [0.1, 0.2]}, ids, "2026-01-01T00:00:00+00:00")
    assert v1["parameters"]["shops"] == ["a,b", "c"]
    v2 = predictor_body("v2", ["f"], {"f": [0.1, 0.2]}, ids, "2026-01-01T00:00:00+00:00")
    sent = v2["parameters"][plural("shop")]
    assert sent == encode_parameter(["a,b", "c"])
    assert parse_parameter(sent, "string", 2, "parameters.shops") == ["a,b", "c"]
    assert parse_parameter("7, 8", "int", 2, "parameters.item_ids") == [7, 8]  # the old form
    with pytest.raises(InvalidInput, match="2 ids for 3 rows"):
        parse_parameter("[7, 8]", "int", 3, "parameters.item_ids")
