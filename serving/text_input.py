"""Request-time text (the contract's ``features.text``), checked the same way by the
transformer and the predictor: valid UTF-8, not blank, at most ``serving.max_text_chars``
characters. A violation is ``InvalidInput`` (HTTP 400, gRPC INVALID_ARGUMENT) naming the
field, the rule and the fix; never a 5xx."""

from __future__ import annotations

from typing import Any

from kserve.errors import InvalidInput

from esteira.errors import brief

DATATYPE = "BYTES"  # V2: text travels as BYTES (UTF-8); V1: a JSON string


def text_value(value: Any, where: str, max_chars: int) -> str:
    """One text value as ``str``, checked (bytes are decoded as strict UTF-8)."""
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"{where}: is not valid UTF-8 (byte {exc.start} of {len(value)}); "
                "send the text encoded as UTF-8"
            ) from None
    if not isinstance(value, str):
        raise InvalidInput(
            f"{where}: expected a string (text), got {type(value).__name__} {brief(value)}"
        )
    if not value.strip():
        raise InvalidInput(f"{where}: is empty; send the text to classify (at least one letter)")
    if len(value) > max_chars:
        raise InvalidInput(
            f"{where}: has {len(value)} characters, over the limit of {max_chars} "
            "(serving.max_text_chars); shorten the text"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape
        raise InvalidInput(f"{where}: is not valid Unicode text (a lone surrogate)") from None
    return value


def text_column(values: list[Any], where: Any, max_chars: int) -> list[str]:
    """Every value of a text column; ``where(i)`` names row ``i``."""
    return [text_value(v, where(i), max_chars) for i, v in enumerate(values)]
