"""Data drift between a reference (training) sample and current (serving) data.

Numeric features
    * **PSI** (population stability index) on ``bins`` quantile bins of the reference.
      Quantile bins give every reference bin the same mass, so PSI weighs the whole
      distribution instead of a few dense equal-width bins. The outer bins are open
      ended, so current values outside the reference range still count.
    * **Kolmogorov-Smirnov** two-sample test (``scipy.stats.ks_2samp``) for a p-value.

    A numeric feature drifts when ``(PSI >= psi_moderate and KS p < p_value)`` or
    ``PSI >= psi_significant``. The p-value alone flags trivially small shifts on large
    samples and PSI alone is noisy on small ones; requiring both for a moderate shift
    avoids each failure, while a significant PSI is big enough on its own.

Categorical features
    * **Chi-square** test of homogeneity (``scipy.stats.chi2_contingency``) on the 2xK
      table of reference and current counts over the union of categories. A category
      unseen in the reference has a zero reference cell but a positive column total, so
      its expected count is positive and it adds a large term to the statistic: no
      smoothing is needed for the test (see :func:`chi_square_test`).
    * **Jensen-Shannon distance** (base 2, in ``[0, 1]``) between the category shares,
      as the effect size. It is finite with zero shares, unlike KL divergence.

    A categorical feature drifts when ``chi-square p < p_value and JS >= JS_MODERATE``.

``severity`` is the effect size alone (PSI or JS against the moderate/significant
thresholds); ``drifted`` is the decision above. The dataset drifts when the share of
drifted features is at least ``settings.drift_share``.

A reference can be a DataFrame or the JSON-safe profile from :func:`summarize_reference`
(a seeded sample of up to 5000 values per numeric feature and full category counts), which
a model version stores at registration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from esteira.config import MonitoringSettings
from esteira.errors import DataError

Kind = Literal["numeric", "categorical"]
Severity = Literal["none", "moderate", "significant"]
FloatArray: TypeAlias = npt.NDArray[np.float64]
ReferenceProfile: TypeAlias = Mapping[str, Any]

PSI_BINS = 10
"""Quantile bins of the reference used for PSI."""
PSI_EPSILON = 1e-4
"""Floor for a bin share in PSI: an empty bin would make ``ln(cur / ref)`` infinite. With
1e-4, a bin empty in the reference that holds 1% of current data adds about 0.046."""
JS_MODERATE = 0.1
"""JS distance (base 2) from which a categorical shift is moderate; also the drift threshold.
For small shifts JS^2 is about PSI / (8 ln 2), so 0.1 is roughly PSI 0.055."""
JS_SIGNIFICANT = 0.2
"""JS distance from which a categorical shift is significant (roughly PSI 0.22)."""
HISTOGRAM_BINS = 20
"""Equal-width bins of the display histogram of a numeric feature."""
HISTOGRAM_TAIL = 0.005
"""The display range spans the 0.5%..99.5% quantiles; the outer bins hold the tails."""
MAX_DISPLAY_CATEGORIES = 30
"""Categories drawn in a report; the rest are summed into one ``(other)`` bar."""
SAMPLE_SIZE = 5000
"""Numeric values a reference profile keeps per feature."""
PROFILE_FORMAT = "esteira.drift.reference/v1"

_FIX_FEATURES = "fix the data upstream or leave the feature out of `features`"


# ---- statistics on arrays -------------------------------------------------------------


def _finite(values: npt.ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    array = array[np.isfinite(array)]
    if array.size == 0:
        raise DataError(name, "has no finite values", "pass at least one non-null number")
    return array


def quantile_cuts(reference: FloatArray, bins: int = PSI_BINS) -> FloatArray:
    """Interior cut points of ``bins`` quantile bins of ``reference`` (finite values).

    The cuts are the ``1/bins .. (bins-1)/bins`` quantiles, deduplicated, so ties (a point
    mass such as many zeros) merge bins instead of making empty ones. With the cuts as
    left-closed boundaries the first bin is ``(-inf, c1)`` and the last ``[ck, inf)``, so
    values outside the reference range are counted. When the last cut is the reference
    maximum (a point mass at the top, or a constant feature) a cut just above the maximum
    is added, so values above the reference range get their own bin.
    """
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    probs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    cuts = np.unique(np.quantile(reference, probs))
    top = reference.max()
    if cuts[-1] >= top:
        cuts = np.append(cuts, np.nextafter(top, np.inf))
    return cuts


def bin_shares(values: FloatArray, cuts: FloatArray) -> FloatArray:
    """Share of ``values`` in each of the ``len(cuts) + 1`` bins ``[c_i, c_i+1)``."""
    index = np.searchsorted(cuts, values, side="right")
    return np.bincount(index, minlength=cuts.size + 1) / values.size


def psi_from_shares(
    reference: FloatArray, current: FloatArray, epsilon: float = PSI_EPSILON
) -> float:
    """``sum((cur - ref) * ln(cur / ref))`` with shares floored at ``epsilon``.

    Every term is >= 0 (both factors share a sign), so PSI is non-negative and exactly 0
    for equal shares. The floored shares are not renormalised: the floor only matters for
    empty bins, where it bounds the term instead of making it infinite.
    """
    ref = np.maximum(reference, epsilon)
    cur = np.maximum(current, epsilon)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def psi(reference: npt.ArrayLike, current: npt.ArrayLike, bins: int = PSI_BINS) -> float:
    """Population stability index of ``current`` against ``reference`` (numeric).

    Bins are quantiles of the reference (:func:`quantile_cuts`); non-finite values are
    dropped. Rules of thumb: < 0.1 stable, 0.1-0.25 moderate shift, >= 0.25 significant.
    """
    ref = _finite(reference, "reference")
    cur = _finite(current, "current")
    cuts = quantile_cuts(ref, bins)
    return psi_from_shares(bin_shares(ref, cuts), bin_shares(cur, cuts))


def ks_test(reference: npt.ArrayLike, current: npt.ArrayLike) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov ``(statistic, p_value)`` from ``scipy.stats.ks_2samp``.

    scipy picks the exact distribution for small samples and the asymptotic one otherwise.
    """
    result = stats.ks_2samp(_finite(reference, "reference"), _finite(current, "current"))
    return float(result.statistic), float(result.pvalue)


def chi_square_test(
    reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike
) -> tuple[float, float, int]:
    """Chi-square test of homogeneity ``(statistic, p_value, dof)`` on a 2xK count table.

    Columns are aligned categories (the union of both sides); columns empty on both sides
    are dropped. Expected counts are ``row_total * column_total / n``, positive for every
    remaining column, so a category missing from the reference needs no smoothing: its
    zero cell against a positive expectation is exactly the evidence of drift. No Yates
    correction, so the statistic means the same for every K. One category means no test.
    """
    table = np.vstack([np.asarray(reference_counts), np.asarray(current_counts)]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0, 0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue), int(result.dof)


def js_distance(p: npt.ArrayLike, q: npt.ArrayLike, base: float = 2.0) -> float:
    """Jensen-Shannon distance: ``sqrt((KL(p||m) + KL(q||m)) / 2)``, ``m = (p + q) / 2``.

    ``p`` and ``q`` are counts or shares over the same categories (normalised here). With
    base 2 the distance lies in ``[0, 1]``; zero shares contribute nothing (``0 log 0 = 0``).
    """
    p_arr = np.asarray(p, dtype=np.float64)
    q_arr = np.asarray(q, dtype=np.float64)
    p_arr = p_arr / p_arr.sum()
    q_arr = q_arr / q_arr.sum()
    m = 0.5 * (p_arr + q_arr)

    def kl_to_m(a: FloatArray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / m[mask])))

    divergence = 0.5 * (kl_to_m(p_arr) + kl_to_m(q_arr)) / math.log(base)
    return math.sqrt(max(divergence, 0.0))


def numeric_histogram(
    reference: FloatArray, current: FloatArray, bins: int = HISTOGRAM_BINS
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Equal-width ``(edges, reference_shares, current_shares)`` for display.

    The range covers the 0.5%..99.5% quantiles of both samples, so one outlier does not
    squash the picture; values beyond it are clipped into the outer bins. Integer-valued
    features spanning at most ``2 * bins`` values get one bin per integer (edges at
    half-integers), so counts such as ages or error counts are not merged or left gappy.
    """
    ref_lo, ref_hi = np.quantile(reference, [HISTOGRAM_TAIL, 1 - HISTOGRAM_TAIL])
    cur_lo, cur_hi = np.quantile(current, [HISTOGRAM_TAIL, 1 - HISTOGRAM_TAIL])
    lo, hi = float(min(ref_lo, cur_lo)), float(max(ref_hi, cur_hi))
    integral = _is_integral(reference) and _is_integral(current)
    if integral and hi - lo <= 2 * bins:
        edges = np.arange(math.floor(lo), math.ceil(hi) + 1) - 0.5
        edges = np.append(edges, edges[-1] + 1.0)
    else:
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
    lo, hi = edges[0], edges[-1]
    ref_counts, _ = np.histogram(np.clip(reference, lo, hi), edges)
    cur_counts, _ = np.histogram(np.clip(current, lo, hi), edges)
    return edges, ref_counts / reference.size, cur_counts / current.size


def _is_integral(values: FloatArray) -> bool:
    return bool(np.all(values == np.round(values)))


# ---- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Histogram:
    """What a report draws: shares per numeric bin (``edges``) or per category."""

    reference: list[float]
    current: list[float]
    edges: list[float] | None = None
    categories: list[str] | None = None


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature. ``psi`` is set for numeric features, ``js`` for categorical."""

    feature: str
    kind: Kind
    statistics: dict[str, float]
    p_value: float
    psi: float | None
    js: float | None
    severity: Severity
    drifted: bool
    reference_count: int
    current_count: int
    reference_null_share: float
    current_null_share: float
    histogram: Histogram

    @property
    def effect_size(self) -> float:
        """PSI for numeric features, JS distance for categorical ones."""
        value = self.psi if self.kind == "numeric" else self.js
        return float("nan") if value is None else value


@dataclass(frozen=True)
class DriftReport:
    """Per-feature drift plus the dataset verdict."""

    features: list[FeatureDrift]
    reference_rows: int
    current_rows: int
    drift_share: float
    dataset_drift: bool
    thresholds: dict[str, float]
    skipped: list[str] = field(default_factory=list)

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    @property
    def significant_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted and f.severity == "significant"]

    @property
    def drift_detected(self) -> bool:
        """The verdict that matters: dataset drift, or any feature drifting significantly.

        The share alone can miss a real shift: one recalibrated sensor moves a handful of
        its derived features by a lot while the many others dilute the share.
        """
        return bool(self.dataset_drift or self.significant_features)

    def feature(self, name: str) -> FeatureDrift:
        for result in self.features:
            if result.feature == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict (NaN and infinities become ``None``)."""
        derived = {
            "drifted_features": self.drifted_features,
            "significant_features": self.significant_features,
            "drift_detected": self.drift_detected,
        }
        return _json_safe(asdict(self) | derived)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


# ---- columns: one feature of the reference or the current data ------------------------


@dataclass(frozen=True)
class _Column:
    kind: Kind
    rows: int
    count: int
    values: FloatArray | None = None
    counts: dict[str, int] | None = None

    @property
    def null_share(self) -> float:
        return 1.0 - self.count / self.rows if self.rows else 0.0


def infer_kind(series: pd.Series) -> Kind | None:
    """``categorical`` for object/category/string/bool, ``numeric`` for numbers, else None."""
    dtype = series.dtype
    if (
        pd.api.types.is_bool_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    ):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return "numeric"
    return None


def _column(series: pd.Series, kind: Kind, name: str, side: str) -> _Column:
    """Non-null values (numeric) or counts (categorical) of one column; nulls are dropped."""
    if series.isna().all():
        raise DataError(name, f"all values are null in the {side} data", _FIX_FEATURES)
    if kind == "categorical":
        counts = series.dropna().astype(str).value_counts(sort=False)
        mapping = {str(k): int(v) for k, v in counts.items()}
        return _Column(kind, len(series), sum(mapping.values()), counts=mapping)
    if infer_kind(series) != "numeric":
        raise DataError(
            name,
            f"is numeric in the reference but has dtype {series.dtype} in the {side} data",
            "cast the column to a numeric dtype",
        )
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise DataError(name, f"has no finite values in the {side} data", _FIX_FEATURES)
    return _Column(kind, len(series), int(values.size), values=values)


def _require_rows(df: pd.DataFrame, side: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise DataError(side, f"must be a pandas DataFrame, got {type(df).__name__}", "")
    if len(df) == 0:
        raise DataError(side, "has no rows", f"pass a non-empty {side} dataset")


def _select_features(
    df: pd.DataFrame, features: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """Features to compare and the columns skipped because their dtype is unsupported."""
    if features is None:
        names = [str(c) for c in df.columns]
        kept = [n for n in names if infer_kind(df[n]) is not None]
        return kept, [n for n in names if n not in kept]
    names = list(dict.fromkeys(features))
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise DataError(
            ", ".join(missing),
            "missing from the reference data",
            "pass only columns of the reference in `features`",
        )
    for name in names:
        if infer_kind(df[name]) is None:
            raise DataError(
                name,
                f"has dtype {df[name].dtype}, neither numeric nor categorical",
                "convert it or leave it out of `features`",
            )
    return names, []


# ---- reference profile --------------------------------------------------------------------


def summarize_reference(
    df: pd.DataFrame,
    features: Sequence[str] | None = None,
    *,
    sample_size: int = SAMPLE_SIZE,
    seed: int = 0,
) -> dict[str, Any]:
    """A small JSON-safe profile of ``df`` that :func:`compare` accepts as the reference.

    Numeric features keep a seeded random sample (without replacement, in row order) of
    up to ``sample_size`` non-null values; a reference of at most ``sample_size`` rows
    is kept whole, so comparing against the profile equals comparing against the frame.
    Categorical features keep full counts (category names as strings). Row and non-null
    counts are kept so null shares survive. Round-trips through ``json.dumps``/``loads``.
    """
    _require_rows(df, "reference")
    names, skipped = _select_features(df, features)
    profile: dict[str, Any] = {
        "format": PROFILE_FORMAT,
        "rows": len(df),
        "sample_size": sample_size,
        "seed": seed,
        "skipped": skipped,
        "features": {},
    }
    for name in names:
        kind = infer_kind(df[name])
        assert kind is not None
        column = _column(df[name], kind, name, "reference")
        entry: dict[str, Any] = {"kind": kind, "rows": column.rows, "count": column.count}
        if column.values is not None:
            values = column.values
            if values.size > sample_size:
                rng = np.random.default_rng(seed)
                keep = rng.choice(values.size, size=sample_size, replace=False)
                values = values[np.sort(keep)]
            entry["sample"] = values.tolist()
        else:
            entry["counts"] = column.counts
        profile["features"][name] = entry
    return profile


def _profile_column(profile: ReferenceProfile, name: str) -> _Column:
    entries = profile["features"]
    if name not in entries:
        raise DataError(
            name,
            "is not in the reference profile",
            "profile the feature at registration or leave it out of `features`",
        )
    entry = entries[name]
    bad = DataError(
        f"reference profile.{name}", "is malformed", "rebuild it with summarize_reference"
    )
    try:
        rows, count, kind = int(entry["rows"]), int(entry["count"]), entry["kind"]
        if kind == "numeric":
            values = np.asarray(entry["sample"], dtype=np.float64)
            if values.size == 0:
                raise bad
            return _Column("numeric", rows, count, values=values)
        if kind == "categorical":
            counts = {str(k): int(v) for k, v in entry["counts"].items()}
            return _Column("categorical", rows, count, counts=counts)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise bad from None
    raise bad


def _check_profile(profile: Any) -> ReferenceProfile:
    if not isinstance(profile, Mapping) or profile.get("format") != PROFILE_FORMAT:
        raise DataError(
            "reference",
            f"is neither a DataFrame nor a profile with format {PROFILE_FORMAT!r}",
            "pass the training DataFrame or the output of summarize_reference",
        )
    if not isinstance(profile.get("features"), Mapping) or int(profile.get("rows", 0)) <= 0:
        raise DataError("reference", "profile has no rows or features", "rebuild the profile")
    return profile


# ---- comparison -----------------------------------------------------------------------------


def _severity(value: float, moderate: float, significant: float) -> Severity:
    if value >= significant:
        return "significant"
    return "moderate" if value >= moderate else "none"


def _numeric_drift(
    name: str, ref: _Column, cur: _Column, settings: MonitoringSettings
) -> FeatureDrift:
    assert ref.values is not None and cur.values is not None
    cuts = quantile_cuts(ref.values, PSI_BINS)
    psi_value = psi_from_shares(bin_shares(ref.values, cuts), bin_shares(cur.values, cuts))
    ks_stat, ks_p = ks_test(ref.values, cur.values)
    drifted = (
        psi_value >= settings.psi_moderate and ks_p < settings.p_value
    ) or psi_value >= settings.psi_significant
    edges, ref_shares, cur_shares = numeric_histogram(ref.values, cur.values)
    statistics = {
        "psi": psi_value,
        "psi_bins": float(cuts.size + 1),
        "ks_statistic": ks_stat,
        "ks_p_value": ks_p,
        "reference_mean": float(ref.values.mean()),
        "current_mean": float(cur.values.mean()),
        "reference_std": float(ref.values.std()),
        "current_std": float(cur.values.std()),
    }
    return FeatureDrift(
        feature=name,
        kind="numeric",
        statistics=statistics,
        p_value=ks_p,
        psi=psi_value,
        js=None,
        severity=_severity(psi_value, settings.psi_moderate, settings.psi_significant),
        drifted=bool(drifted),
        reference_count=ref.count,
        current_count=cur.count,
        reference_null_share=ref.null_share,
        current_null_share=cur.null_share,
        histogram=Histogram(ref_shares.tolist(), cur_shares.tolist(), edges=edges.tolist()),
    )


def _category_histogram(
    categories: list[str], ref_shares: FloatArray, cur_shares: FloatArray
) -> Histogram:
    """Most frequent categories first; beyond MAX_DISPLAY_CATEGORIES they sum to one bar."""
    order = np.lexsort((-cur_shares, -ref_shares))  # by reference share, then current
    shown = order[:MAX_DISPLAY_CATEGORIES]
    rest = order[MAX_DISPLAY_CATEGORIES:]
    labels = [categories[i] for i in shown]
    ref_list, cur_list = ref_shares[shown].tolist(), cur_shares[shown].tolist()
    if rest.size:
        labels.append(f"(other {rest.size})")
        ref_list.append(float(ref_shares[rest].sum()))
        cur_list.append(float(cur_shares[rest].sum()))
    return Histogram(ref_list, cur_list, categories=labels)


def _categorical_drift(
    name: str, ref: _Column, cur: _Column, settings: MonitoringSettings
) -> FeatureDrift:
    assert ref.counts is not None and cur.counts is not None
    categories = sorted(set(ref.counts) | set(cur.counts))
    ref_counts = np.array([ref.counts.get(c, 0) for c in categories], dtype=np.float64)
    cur_counts = np.array([cur.counts.get(c, 0) for c in categories], dtype=np.float64)
    chi2, p_value, dof = chi_square_test(ref_counts, cur_counts)
    ref_shares, cur_shares = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
    js = js_distance(ref_shares, cur_shares)
    statistics = {
        "chi2": chi2,
        "chi2_dof": float(dof),
        "chi2_p_value": p_value,
        "js_distance": js,
        "psi": psi_from_shares(ref_shares, cur_shares),
        "categories": float(len(categories)),
        "new_categories": float(sum(c not in ref.counts for c in cur.counts)),
    }
    return FeatureDrift(
        feature=name,
        kind="categorical",
        statistics=statistics,
        p_value=p_value,
        psi=None,
        js=js,
        severity=_severity(js, JS_MODERATE, JS_SIGNIFICANT),
        drifted=bool(p_value < settings.p_value and js >= JS_MODERATE),
        reference_count=ref.count,
        current_count=cur.count,
        reference_null_share=ref.null_share,
        current_null_share=cur.null_share,
        histogram=_category_histogram(categories, ref_shares, cur_shares),
    )


def compare(
    reference: pd.DataFrame | ReferenceProfile,
    current: pd.DataFrame,
    settings: MonitoringSettings,
    features: list[str] | None = None,
) -> DriftReport:
    """Drift of every feature of ``current`` against ``reference`` and the dataset verdict.

    ``reference`` is a DataFrame or a profile from :func:`summarize_reference`. The kind of
    a feature comes from the reference dtype (object/category/string/bool: categorical;
    numbers: numeric). Without ``features`` every numeric or categorical column of the
    reference (or profile) is compared and other dtypes (datetimes) are listed in
    ``skipped``. Nulls (and infinities) are dropped per feature; their share is reported.
    """
    _require_rows(current, "current")
    if isinstance(reference, pd.DataFrame):
        _require_rows(reference, "reference")
        names, skipped = _select_features(reference, features)
        reference_rows = len(reference)
        ref_columns = {
            n: _column(reference[n], infer_kind(reference[n]) or "numeric", n, "reference")
            for n in names
        }
    else:
        profile = _check_profile(reference)
        names = list(dict.fromkeys(features)) if features is not None else list(profile["features"])
        skipped = [] if features is not None else list(profile.get("skipped", []))
        reference_rows = int(profile["rows"])
        ref_columns = {n: _profile_column(profile, n) for n in names}
    if not names:
        raise DataError("features", "no numeric or categorical feature to compare", _FIX_FEATURES)
    missing = [n for n in names if n not in current.columns]
    if missing:
        raise DataError(
            ", ".join(missing),
            "missing from the current data",
            "send every monitored feature or leave it out of `features`",
        )
    results = []
    for name in names:
        ref = ref_columns[name]
        cur = _column(current[name], ref.kind, name, "current")
        drift = _numeric_drift if ref.kind == "numeric" else _categorical_drift
        results.append(drift(name, ref, cur, settings))
    share = sum(r.drifted for r in results) / len(results)
    return DriftReport(
        features=results,
        reference_rows=reference_rows,
        current_rows=len(current),
        drift_share=share,
        dataset_drift=share >= settings.drift_share,
        thresholds={
            "psi_moderate": settings.psi_moderate,
            "psi_significant": settings.psi_significant,
            "p_value": settings.p_value,
            "drift_share": settings.drift_share,
            "js_moderate": JS_MODERATE,
            "js_significant": JS_SIGNIFICANT,
        },
        skipped=skipped,
    )
