"""One error type for everything a user can get wrong.

Every message names the field, the rule that failed and the fix, so the CLI can
print it as one line instead of a traceback.
"""

from __future__ import annotations


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
