"""Validate: the raw dataset against its contract. Any violation stops the pipeline.

Each violation names the column, the rule and how many values break it, and
every rule is checked before failing so one run reports all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from esteira.config import ValidationSettings
from esteira.contract import Column, Contract
from esteira.errors import DataError


@dataclass(frozen=True)
class Violation:
    column: str
    rule: str
    count: int
    detail: str

    def __str__(self) -> str:
        return f"{self.column}: {self.rule} ({self.count} offending) - {self.detail}"


@dataclass
class ValidationReport:
    rows: int
    violations: list[Violation] = field(default_factory=list)
    null_ratios: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def raise_for_violations(self) -> None:
        if not self.violations:
            return
        # a missing column explains most other failures: report it first
        first, *rest = sorted(self.violations, key=lambda v: v.rule != "required")
        more = f" (+{len(rest)} more: " + "; ".join(map(str, rest)) + ")" if rest else ""
        raise DataError(
            first.column,
            f"rule '{first.rule}' failed for {first.count} value(s): {first.detail}{more}",
            "fix the source data or the contract in dataset.yaml",
        )


_DTYPE_CHECKS = {
    "datetime": pd.api.types.is_datetime64_any_dtype,
    "int": pd.api.types.is_integer_dtype,
    "float": lambda s: pd.api.types.is_float_dtype(s) or pd.api.types.is_integer_dtype(s),
    "string": lambda s: pd.api.types.is_string_dtype(s) or pd.api.types.is_object_dtype(s),
    "bool": pd.api.types.is_bool_dtype,
}


def _dtype_violation(name: str, series: pd.Series, col: Column) -> Violation | None:
    if _DTYPE_CHECKS[col.dtype](series):
        if col.dtype == "string":
            non_str = series.dropna().map(type).ne(str).sum()
            if non_str:
                return Violation(
                    name, "dtype", int(non_str), f"expected strings, found {non_str} other values"
                )
        return None
    coerced = pd.to_numeric(series, errors="coerce") if col.dtype in ("int", "float") else None
    bad = int((coerced.isna() & series.notna()).sum()) if coerced is not None else len(series)
    return Violation(
        name, "dtype", bad or len(series), f"expected {col.dtype}, found {series.dtype}"
    )


def validate(
    frame: pd.DataFrame,
    contract: Contract,
    rules: ValidationSettings,
    now: pd.Timestamp | None = None,
) -> ValidationReport:
    report = ValidationReport(rows=len(frame))
    add = report.violations.append
    if len(frame) < rules.min_rows:
        add(
            Violation(
                "(dataset)",
                "min_rows",
                len(frame),
                f"{len(frame)} rows, at least {rules.min_rows} required",
            )
        )

    for name, col in contract.columns.items():
        if name not in frame.columns:
            add(
                Violation(
                    name,
                    "required",
                    len(frame),
                    f"column '{name}' is missing; found {sorted(frame.columns)}",
                )
            )
            continue
        series = frame[name]
        nulls = int(series.isna().sum())
        ratio = nulls / len(frame) if len(frame) else 0.0
        report.null_ratios[name] = round(ratio, 6)
        limit = 1.0 if col.nullable else rules.max_null_ratio
        if ratio > limit:
            add(Violation(name, "max_null_ratio", nulls, f"null ratio {ratio:.4f} > {limit}"))
        wrong_type = _dtype_violation(name, series, col)
        if wrong_type:
            add(wrong_type)
            continue
        if col.min is not None and (low := int((series < col.min).sum())):
            add(Violation(name, "min", low, f"values below {col.min} (lowest {series.min()})"))
        if col.max is not None and (high := int((series > col.max).sum())):
            add(Violation(name, "max", high, f"values above {col.max} (highest {series.max()})"))

    if all(c in frame.columns for c in contract.unique):
        dupes = int(frame.duplicated(subset=contract.unique).sum())
        if dupes:
            add(Violation(",".join(contract.unique), "unique", dupes, "duplicate key rows"))

    ts = contract.timestamp
    if ts in frame.columns and pd.api.types.is_datetime64_any_dtype(frame[ts]):
        now = now or pd.Timestamp.now(tz="UTC")
        limit = now + pd.Timedelta(hours=rules.future_tolerance_hours)
        stamps = frame[ts] if frame[ts].dt.tz is not None else frame[ts].dt.tz_localize("UTC")
        if future := int((stamps > limit).sum()):
            add(Violation(ts, "not_in_future", future, f"timestamps after {limit.isoformat()}"))
    return report
