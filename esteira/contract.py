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

TTL_DOC = "how old a value may be and still be served (Feast TTL); default per kind"
DType = Literal["datetime", "int", "float", "string", "bool"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    dtype: DType
    min: float | None = None
    max: float | None = None
    nullable: bool = False


class Label(_Strict):
    """What a model predicts for an entity at time t.

    * ``kind: event`` (classification): 1 when ``event`` is non-zero in a row within
      (t, t + horizon], else 0;
    * ``kind: value`` (regression): the value of ``column`` in the row that becomes known
      at t + horizon (its timestamp + ``available_after_hours``): "sales h hours ahead";
    * ``kind: class`` (classification): the row's own 0/1 ``column``, known with the row
      (e.g. a document's class); every row is an entity row, no horizon.
    """

    name: str
    kind: Literal["event", "value", "class"] = "event"
    event: str | None = None
    column: str | None = None
    horizon_hours: int = Field(0, ge=0, description="event and value labels: how far ahead")
    classes: list[str] = Field(
        default_factory=lambda: ["0", "1"],
        min_length=2,
        max_length=2,
        description="event labels: what 0 and 1 are called in reports",
    )
    season_hours: int | None = Field(
        None, ge=1, description="value labels: the seasonal-naive baseline's season (e.g. 168)"
    )

    @model_validator(mode="after")
    def _kind_needs_its_column(self) -> Label:
        if self.kind == "event" and not self.event:
            raise ValueError("label.kind 'event' needs `event`: the column whose 1s are events")
        if self.kind in ("value", "class") and not self.column:
            raise ValueError(f"label.kind {self.kind!r} needs `column`: the column to predict")
        if self.kind != "class" and self.horizon_hours < 1:
            raise ValueError(f"label.kind {self.kind!r} needs `horizon_hours` >= 1")
        return self

    @property
    def source(self) -> str:
        """The raw column the label comes from."""
        return str(self.event if self.kind == "event" else self.column)


class Rolling(_Strict):
    """Time windows over past rows per entity: ``<col>_<stat>_<hours>h``."""

    table: str
    ttl_hours: int | None = Field(None, ge=1, description=TTL_DOC)
    columns: list[str]
    windows_hours: list[int]
    stats: list[Literal["mean", "std", "min", "max", "sum", "count"]]


class Lags(_Strict):
    """Past values per entity: ``<col>_lag_<k>`` is the value ``k - 1`` steps before the newest
    known one (``lag_1``: the newest), by time (a missing step is a missing value)."""

    table: str
    ttl_hours: int | None = Field(None, ge=1, description=TTL_DOC)
    columns: list[str]
    lags: list[int] = Field(min_length=1)
    step_hours: int = Field(24, ge=1)

    @model_validator(mode="after")
    def _positive(self) -> Lags:
        if min(self.lags) < 1:
            raise ValueError("lags start at 1 (the newest known value)")
        return self


CalendarPart = Literal[
    "day_of_week", "day_of_month", "month", "day_of_year", "is_holiday", "days_to_holiday"
]


class Calendar(_Strict):
    """Calendar of the moment a prediction is for (the entity row's time): the day of week, the
    month, ... and ``holidays`` (month-day, ``"12-25"``) known in advance."""

    table: str
    ttl_hours: int | None = Field(None, ge=1, description=TTL_DOC)
    parts: list[CalendarPart]
    holidays: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _month_days(self) -> Calendar:
        for day in self.holidays:
            month, _, dom = day.partition("-")
            if not (month.isdigit() and dom.isdigit() and 1 <= int(month) <= 12):
                raise ValueError(f"holiday {day!r} is not MM-DD")
        return self


class Static(_Strict):
    table: str
    ttl_hours: int | None = Field(None, ge=1, description=TTL_DOC)
    columns: list[str]


class Events(_Strict):
    table: str
    ttl_hours: int | None = Field(None, ge=1, description=TTL_DOC)
    counts: dict[str, int] = Field(default_factory=dict)
    since: list[str] = Field(default_factory=list)
    since_cap_hours: int = 2160


class OnDemand(_Strict):
    """A feature computed at request time from a request value (and a stored feature):

    * ``identity``: the request value itself;
    * ``ratio``: request value / (feature + epsilon), e.g. today's price against its mean;
    * ``zscore``: (request value - feature) / (``scale`` feature + epsilon).
    """

    name: str
    op: Literal["identity", "ratio", "zscore"]
    request: str
    feature: str | None = None
    scale: str | None = None

    @model_validator(mode="after")
    def _operands(self) -> OnDemand:
        if self.op in ("ratio", "zscore") and not self.feature:
            raise ValueError(f"on_demand {self.name}: op {self.op!r} needs `feature`")
        if self.op == "zscore" and not self.scale:
            raise ValueError(f"on_demand {self.name}: op 'zscore' needs `scale`")
        return self


class Text(_Strict):
    """Free text that arrives with the request (a request value of a string column): the
    feature ``name`` is the text as sent; the model vectorises it (TF-IDF), serving checks it
    (non-empty, valid UTF-8, at most ``serving.max_text_chars`` characters)."""

    name: str
    request: str


class FeatureSpec(_Strict):
    rolling: Rolling | None = None
    lags: Lags | None = None
    calendar: Calendar | None = None
    static: Static | None = None
    events: Events | None = None
    on_demand: list[OnDemand] | None = None  # absent: a z-score per request value (legacy)
    text: list[Text] | None = None


class Contract(_Strict):
    entity: str | list[str]
    timestamp: str
    unique: list[str]
    columns: dict[str, Column]
    label: Label
    request: dict[str, str] = Field(default_factory=dict)
    features: FeatureSpec
    available_after_hours: float = Field(
        0.0, ge=0, description="a row's values are known this long after its timestamp"
    )

    @model_validator(mode="after")
    def _columns_exist(self) -> Contract:
        named = [*self.keys, self.timestamp, *self.unique, self.label.source]
        named += list(self.request.values())
        f = self.features
        if f.rolling:
            named += f.rolling.columns
        if f.lags:
            named += f.lags.columns
        if f.static:
            named += f.static.columns
        if f.events:
            named += list(f.events.counts) + f.events.since
        missing = sorted(set(named) - set(self.columns))
        if missing:
            raise ValueError(f"columns {missing} are used but not declared under `columns`")
        for spec in f.on_demand or []:
            if spec.request not in self.request:
                raise ValueError(
                    f"on_demand {spec.name}: request value {spec.request!r} is not under `request`"
                )
        texts = {spec.request for spec in f.text or []}
        for spec in f.text or []:
            column = self.request.get(spec.request)
            if column is None:
                raise ValueError(
                    f"text {spec.name}: request value {spec.request!r} is not under `request`"
                )
            if self.columns[column].dtype != "string":
                raise ValueError(f"text {spec.name}: request column {column!r} must be a string")
        for name, column in self.request.items():
            if self.columns[column].dtype == "string" and name not in texts:
                raise ValueError(
                    f"request value {name!r} is a string column: name it under features.text"
                )
            if name in texts and any(s.request == name for s in f.on_demand or []):
                raise ValueError(f"request value {name!r} is text; on_demand ops take numbers")
        for key in self.keys:
            if self.columns[key].dtype not in ("int", "string"):
                raise ValueError(f"entity key {key!r} must be an int or string column")
        return self

    @property
    def keys(self) -> list[str]:
        """The entity's join keys: one column, or several (a composite key)."""
        return [self.entity] if isinstance(self.entity, str) else list(self.entity)

    @property
    def key_kinds(self) -> dict[str, str]:
        """Each join key and its kind (``int`` or ``string``), in key order."""
        return {k: self.columns[k].dtype for k in self.keys}

    @property
    def task(self) -> str:
        """What the label asks for: an event or a class is a classification, a value a
        regression."""
        return "regression" if self.label.kind == "value" else "classification"

    @property
    def text_requests(self) -> list[str]:
        """The request values that are free text (the rest are numbers)."""
        return [spec.request for spec in self.features.text or []]

    @property
    def text_features(self) -> list[str]:
        """The features that are request-time text, vectorised by the model."""
        return [spec.name for spec in self.features.text or []]

    @property
    def source_tables(self) -> list[str]:
        f = self.features
        specs = (f.rolling, f.static, f.events, f.lags, f.calendar)
        return [spec.table for spec in specs if spec is not None]


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
