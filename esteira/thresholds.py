"""Choosing a classifier's ``decision_threshold`` from a policy, and the table to judge it by.

Pure functions of ``(y_true, proba, policy)``: training calls them with predictions on a
time-ordered validation slice the model did not train on; a hyperparameter search can call
them with its winner's out-of-fold predictions. The hold-out is never passed here to choose.

The class is ``proba >= threshold``. Candidate thresholds are the midpoints between
consecutive distinct scores (plus one below the lowest and one above the highest), so a
chosen threshold splits the validation scores where it was measured and does not sit on a
score. Ties between candidates go to the higher threshold (fewer alerts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from esteira.config import ThresholdSettings
from esteira.errors import DataError

DEFAULT_THRESHOLD = 0.5  # what a classifier's predict() does; the table and summary compare to it


@dataclass(frozen=True)
class Operating:
    """One threshold's outcome on labelled rows."""

    threshold: float
    rows: int
    positives: int
    alerts: int  # predicted positive
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    alerts_per_1000: float
    cost: float  # fn_cost * fn + fp_cost * fp
    expected_cost: float  # cost per 1,000 rows

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold, the policy that chose it, and how it did where it was chosen."""

    decision_threshold: float
    policy: dict[str, Any]  # {"policy": "min_cost", "fn_cost": 20.0, "fp_cost": 1.0}
    chosen_on: str  # e.g. "validation slice: the last 20% of the training window"
    validation: Operating | None  # how it did where it was chosen (None: policy fixed)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision_threshold": self.decision_threshold,
            "policy": self.policy,
            "chosen_on": self.chosen_on,
            "validation": self.validation.as_dict() if self.validation else None,
            "note": self.note,
        }


def policy_summary(policy: ThresholdSettings) -> dict[str, Any]:
    """The policy and only the settings it uses (what metadata and reports show)."""
    used = {
        "fixed": ("decision_threshold",),
        "max_f_beta": ("beta",),
        "min_cost": ("fn_cost", "fp_cost"),
        "precision_at_least": ("min_precision",),
    }[policy.policy]
    return {"policy": policy.policy, **{k: getattr(policy, k) for k in used}}


def _arrays(y_true: Any, proba: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(proba, dtype="float64").ravel()
    if len(y) != len(p) or len(y) == 0:
        raise DataError(
            "proba", f"needs one score per label ({len(p)} scores, {len(y)} labels)", "pass both"
        )
    if not np.isfinite(p).all():
        raise DataError("proba", "holds non-finite scores", "score with predict_proba")
    if not np.isin(y, (0, 1)).all():
        raise DataError("y_true", "labels must be 0 or 1", "pass the binary label")
    return y, p


def operating(y_true: Any, proba: Any, threshold: float, policy: ThresholdSettings) -> Operating:
    """Counts, precision, recall, alerts and cost of ``proba >= threshold``."""
    y, p = _arrays(y_true, proba)
    alert = p >= threshold
    tp = int(np.sum(alert & (y == 1)))
    fp = int(np.sum(alert & (y == 0)))
    return _operating(threshold, len(y), int(y.sum()), tp, fp, policy)


def _operating(
    threshold: float, rows: int, positives: int, tp: int, fp: int, policy: ThresholdSettings
) -> Operating:
    fn = positives - tp
    alerts = tp + fp
    cost = policy.fn_cost * fn + policy.fp_cost * fp
    return Operating(
        threshold=float(threshold),
        rows=rows,
        positives=positives,
        alerts=alerts,
        tp=tp,
        fp=fp,
        fn=fn,
        precision=tp / alerts if alerts else 0.0,
        recall=tp / positives if positives else 0.0,
        alerts_per_1000=1000.0 * alerts / rows,
        cost=float(cost),
        expected_cost=1000.0 * cost / rows,
    )


def sweep(y_true: Any, proba: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(candidate thresholds descending, true positives, false positives) at each candidate."""
    y, p = _arrays(y_true, proba)
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(ps))[0], len(ps) - 1]  # last index of each score
    tps = np.cumsum(ys)[distinct]
    fps = (distinct + 1) - tps
    scores = ps[distinct]
    lower = np.r_[scores[1:], 0.0]  # the next lower score (0 below the lowest)
    mids = (scores + lower) / 2.0
    # a midpoint of two adjacent doubles may round onto the lower one: use the score itself
    mids = np.where(mids > lower, mids, scores)
    top = (scores[0] + 1.0) / 2.0 if scores[0] < 1.0 else np.nextafter(1.0, 2.0)
    thresholds = np.r_[top, mids]
    return thresholds, np.r_[0, tps], np.r_[0, fps]


def choose_threshold(
    y_true: Any, proba: Any, policy: ThresholdSettings, *, chosen_on: str = "validation"
) -> ThresholdChoice:
    """The threshold ``policy`` picks on these labelled predictions."""
    summary = policy_summary(policy)
    if policy.policy == "fixed":
        return ThresholdChoice(policy.decision_threshold, summary, "configured", None)
    y, p = _arrays(y_true, proba)
    rows, positives = len(y), int(y.sum())
    if positives == 0 or positives == rows:
        raise DataError(
            "model.threshold",
            f"the rows it is chosen on ({chosen_on}) hold one class only ({rows} rows)",
            "use more data, a larger model.threshold.validation_fraction, or policy fixed",
        )
    thresholds, tps, fps = sweep(y, p)
    # only thresholds a config could hold: 0 < t < 1
    valid = (thresholds > 0) & (thresholds < 1)
    thresholds, tps, fps = thresholds[valid], tps[valid], fps[valid]
    alerts = tps + fps
    precision = np.divide(tps, alerts, out=np.zeros(len(tps)), where=alerts > 0)
    recall = tps / positives
    note = ""
    if policy.policy == "min_cost":
        score = -(policy.fn_cost * (positives - tps) + policy.fp_cost * fps)
    elif policy.policy == "max_f_beta":
        b2 = policy.beta**2
        denom = b2 * precision + recall
        score = np.divide(
            (1 + b2) * precision * recall, denom, out=np.zeros(len(tps)), where=denom > 0
        )
    else:  # precision_at_least: the best recall whose precision reaches the floor
        ok = (precision >= policy.min_precision) & (alerts > 0)
        if ok.any():
            score = np.where(ok, recall, -1.0)
        else:
            score = precision
            note = (
                f"no threshold reaches precision {policy.min_precision:g} on the {chosen_on}; "
                f"the most precise one ({precision.max():.3f}) was chosen"
            )
    best = int(np.argmax(score))  # first maximum: thresholds descend, so the highest of ties
    t = float(thresholds[best])
    at = _operating(t, rows, positives, int(tps[best]), int(fps[best]), policy)
    return ThresholdChoice(t, summary, chosen_on, at, note)


def threshold_table(
    y_true: Any, proba: Any, thresholds: list[float], policy: ThresholdSettings
) -> list[Operating]:
    """One row per threshold (sorted, distinct): what a planner compares."""
    return [operating(y_true, proba, t, policy) for t in sorted(set(thresholds))]


def pr_curve(y_true: Any, proba: Any, points: int = 200) -> dict[str, list[float]]:
    """Precision-recall curve (sklearn's), thinned to at most ``points`` points."""
    from sklearn.metrics import precision_recall_curve

    y, p = _arrays(y_true, proba)
    precision, recall, thr = precision_recall_curve(y, p)
    keep = np.unique(np.linspace(0, len(precision) - 1, min(len(precision), points)).astype(int))
    thr = np.r_[thr, 1.0]  # the last point (recall 0) has no threshold
    return {
        "precision": precision[keep].round(6).tolist(),
        "recall": recall[keep].round(6).tolist(),
        "threshold": np.clip(thr[keep], 0.0, 1.0).round(6).tolist(),
    }
