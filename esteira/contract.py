"""The dataset contract (``<feature repo>/dataset.yaml``), typed.

Validation, labelling and feature computation all read this one file, so a
new dataset needs a new contract and feature repository, not new code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from esteira.errors import ConfigError

DType = Literal["datetime", "int", "float", "string", "bool"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    dtype: DType
    min: float | None = None
    max: float | None = None
    nullable: bool = False


class Label(_Strict):
    name: str
    event: str
    horizon_hours: int = Field(ge=1)


class Rolling(_Strict):
    table: str
    columns: list[str]
    windows_hours: list[int]
    stats: list[Literal["mean", "std", "min", "max", "sum"]]


class Static(_Strict):
    table: str
    columns: list[str]


class Events(_Strict):
    table: str
    counts: dict[str, int] = Field(default_factory=dict)
    since: list[str] = Field(default_factory=list)
    since_cap_hours: int = 2160


class FeatureSpec(_Strict):
    rolling: Rolling
    static: Static
    events: Events


class Contract(_Strict):
    entity: str
    timestamp: str
    unique: list[str]
    columns: dict[str, Column]
    label: Label
    request: dict[str, str] = Field(default_factory=dict)
    features: FeatureSpec

    @model_validator(mode="after")
    def _columns_exist(self) -> Contract:
        named = [
            self.entity,
            self.timestamp,
            *self.unique,
            self.label.event,
            *self.request.values(),
        ]
        named += self.features.rolling.columns + self.features.static.columns
        named += list(self.features.events.counts) + self.features.events.since
        missing = sorted(set(named) - set(self.columns))
        if missing:
            raise ValueError(f"columns {missing} are used but not declared under `columns`")
        return self

    @property
    def source_tables(self) -> list[str]:
        f = self.features
        return [f.rolling.table, f.static.table, f.events.table]


def load_contract(repo_path: str | Path) -> Contract:
    path = Path(repo_path) / "dataset.yaml"
    if not path.is_file():
        raise ConfigError(
            "features.repo_path",
            f"{path} does not exist",
            "point it at a feature repo with dataset.yaml",
        )
    try:
        return Contract.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}:{key}", first["msg"], "fix the dataset contract") from None
