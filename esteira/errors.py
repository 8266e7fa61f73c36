"""One error type for everything a user can get wrong.

Every message names the field, the rule that failed and the fix, so the CLI can
print it as one line instead of a traceback.
"""

from __future__ import annotations

import reprlib
from typing import Any


class EsteiraError(Exception):
    """A mistake in input, configuration or environment that the user can fix."""

    def __init__(self, field: str, rule: str, fix: str = "") -> None:
        self.field = field
        self.rule = rule
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"{self.field}: {self.rule}"
        return f"{text}. Fix: {self.fix}" if self.fix else text


class ConfigError(EsteiraError):
    """A configuration value that is not allowed."""


class DataError(EsteiraError):
    """Input data that breaks the dataset contract."""


class StorageError(EsteiraError):
    """The configured storage cannot be reached or refused an operation."""


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel = 3  # a document nested 1,000 deep is shown as [[[...]]], not recursed into
_BRIEF.maxstring = _BRIEF.maxother = _BRIEF.maxlong = 60


def brief(value: Any, limit: int = 40) -> str:
    """A client's value as an error message quotes it: a repr, nesting cut at three
    levels and the text at ``limit`` characters. Never raises, whatever was sent (a
    plain ``repr`` of a deeply nested JSON document hits Python's recursion limit)."""
    try:
        text = _BRIEF.repr(value)
    except Exception:  # noqa: BLE001 - a message must not fail; the type is enough
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."
