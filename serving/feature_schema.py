"""The model's inputs from registry metadata: shared by the predictor and the array scorer (fast_model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from esteira.errors import EsteiraError


@dataclass(frozen=True)
class FeatureSchema:
    """The model's inputs, from registry metadata: ordered names and kinds."""

    names: tuple[str, ...]
    kinds: dict[str, str]  # name -> "float" | "int" | "category" | "text"
    pandas_types: dict[str, str]
    # the entity's join keys (-> "int" | "string"), passed as parameters, never features
    keys: dict[str, str] = field(default_factory=dict)
    # float features that were missing in training rows (the model handles them): null is
    # a missing value, not a client's mistake
    nullable: frozenset[str] = frozenset()
    # the longest request-time text accepted (serving.max_text_chars; the predictor sets it)
    max_text_chars: int = 5000

    @classmethod
    def from_metadata(
        cls, metadata: dict[str, Any], keys: dict[str, str] | None = None
    ) -> FeatureSchema:
        """The schema of a version's metadata; ``keys`` stand in for a version registered
        before its metadata named ``entity_keys``."""
        names = tuple(metadata.get("feature_names") or ())
        if not names:
            raise EsteiraError(
                "metadata.feature_names", "is missing or empty", "register the model again"
            )
        types = dict(metadata.get("feature_types") or {})
        categorical = set(metadata.get("categorical_features") or ())
        kinds = {n: _kind(types.get(n, "float64"), n in categorical) for n in names}
        kinds |= {n: "text" for n in metadata.get("text_features") or () if n in kinds}
        keys = dict(metadata.get("entity_keys") or keys or {})
        nullable = frozenset(metadata.get("nullable_features") or ()) & set(names)
        return cls(names, kinds, {n: types.get(n, "float64") for n in names}, keys, nullable)

    def datatype(self, name: str) -> str:
        return {"float": "FP64", "int": "INT64", "category": "BYTES", "text": "BYTES"}[
            self.kinds[name]
        ]

    def describe(self) -> str:
        return ", ".join(self.names)


def _kind(pandas_type: str, categorical: bool) -> str:
    if categorical or pandas_type in ("string", "object", "category", "str"):
        return "category"
    if pandas_type.lower().startswith(("int", "uint")):
        return "int"
    return "float"
