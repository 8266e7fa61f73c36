"""Pick the best trial: the leaderboard of every trial's CV score, the winner's
hyperparameters for the final fit, and the winner's out-of-fold predictions.

The trials' results arrive through ``dsl.Collected``, which under kfp 2.17 turns every
number in a dict into a float (protobuf Struct): trial ids and integer hyperparameters
are typed back by the space (``esteira.search.coerce_params``) before anything uses them.
Selection reads the CV scores alone: the hold-out is not an input of this step.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from esteira.config import ModelSettings, Settings
from esteira.errors import DataError
from esteira.search import SearchParameter, direction, metric_for

if TYPE_CHECKING:  # pandas loads only when there are predictions (not with the search off)
    import pandas as pd


@dataclass(frozen=True)
class Row:
    trial: int
    params: dict[str, Any]
    scores: list[float]
    mean: float
    std: float
    fit_seconds: float


@dataclass(frozen=True)
class Leaderboard:
    metric: str
    direction: str
    rows: list[Row]  # best first

    @property
    def best(self) -> Row:
        return self.rows[0]


def collect(results: list[dict[str, Any]], space: dict[str, SearchParameter]) -> list[Row]:
    """Every trial of every batch, typed back from the collected floats."""
    from esteira.search import coerce_params

    rows = []
    for batch in results:
        for r in batch.get("results", []):
            scores = [float(s) for s in r["scores"]]
            rows.append(
                Row(
                    trial=int(round(float(r["trial"]))),
                    params=coerce_params(dict(r["params"]), space),
                    scores=scores,
                    mean=float(r["mean"]),
                    std=float(r["std"]),
                    fit_seconds=float(r["fit_seconds"]),
                )
            )
    return rows


def leaderboard(rows: list[Row], metric: str) -> Leaderboard:
    """Best first by the mean CV score (ties: the lower spread, then the earlier trial)."""
    sign = -1.0 if direction(metric) == "maximize" else 1.0
    ranked = sorted(rows, key=lambda r: (sign * r.mean, r.std, r.trial))
    return Leaderboard(metric, direction(metric), ranked)


def pick(results: list[dict[str, Any]], model: ModelSettings) -> Leaderboard | None:
    """The leaderboard, or None when the search is off (no trial ran)."""
    from esteira.search import space_for

    rows = collect(results, space_for(model))
    if not rows:
        if model.search.enabled:
            raise DataError("model.search", "no trial returned a result", "see the trials' logs")
        return None
    return leaderboard(rows, metric_for(model))


def winner_settings(settings: Settings, board: Leaderboard | None) -> Settings:
    """The settings the final fit uses: the winner's hyperparameters over the configured."""
    if board is None:
        return settings
    model = settings.model
    chosen = {**model.hyperparameters, **board.best.params}
    return settings.model_copy(
        update={"model": model.model_copy(update={"hyperparameters": chosen})}
    )


def winner_summary(board: Leaderboard | None, model: ModelSettings) -> dict[str, Any]:
    if board is None:
        return {}
    best = board.best
    return {
        "trial": best.trial,
        "params": best.params,
        "hyperparameters": {**model.hyperparameters, **best.params},
        "metric": board.metric,
        "cv_mean": round(best.mean, 6),
        "cv_std": round(best.std, 6),
        "trials": len(board.rows),
        "strategy": model.search.strategy,
        "folds": model.search.folds,
    }


def winner_predictions(
    frames: list[pd.DataFrame], trial: int, label: str, timestamp: str = "event_timestamp"
) -> pd.DataFrame:
    """The winner's out-of-fold predictions (row, time, fold, label, prediction) from the
    batch that ran it."""
    column = f"trial_{trial}"
    for frame in frames:
        if column in frame.columns:
            out = frame[["row", timestamp, "fold", label, column]]
            return out.rename(columns={column: "prediction"}).reset_index(drop=True)
    raise DataError(
        "predictions", f"no batch holds trial {trial}'s predictions", "re-run the search"
    )


def metrics(board: Leaderboard) -> dict[str, float]:
    """The Metrics artifact's scalars: the best, then every trial's mean and spread."""
    m = board.metric
    out = {
        f"best_cv_{m}": round(board.best.mean, 6),
        "best_trial": float(board.best.trial),
        "trials": float(len(board.rows)),
    }
    for r in sorted(board.rows, key=lambda r: r.trial):
        out[f"trial_{r.trial:03d}_cv_{m}_mean"] = round(r.mean, 6)
        out[f"trial_{r.trial:03d}_cv_{m}_std"] = round(r.std, 6)
    return out


def _cell(value: Any) -> str:
    return html.escape(json.dumps(value) if not isinstance(value, str) else value)


def render_html(board: Leaderboard | None) -> str:
    """The leaderboard as an HTML page the Kubeflow UI shows (best first, winner marked)."""
    head = "<!doctype html><html><head><meta charset='utf-8'><title>Search leaderboard</title>"
    style = (
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td.p{text-align:left;font-family:monospace}tr.w{background:#e6f4ea;font-weight:bold}</style>"
    )
    if board is None:
        return f"{head}{style}</head><body><h1>Search leaderboard</h1><p>The search was off.</p></body></html>"
    names = sorted({k for r in board.rows for k in r.params})
    better = "higher" if board.direction == "maximize" else "lower"
    rows = []
    for rank, r in enumerate(board.rows, 1):
        params = "".join(f"<td class='p'>{_cell(r.params.get(n, ''))}</td>" for n in names)
        rows.append(
            f"<tr{' class=w' if rank == 1 else ''}><td>{rank}</td><td>{r.trial}</td>{params}"
            f"<td>{r.mean:.4f}</td><td>{r.std:.4f}</td><td>{r.fit_seconds:.1f}</td></tr>"
        )
    header = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    return (
        f"{head}{style}</head><body><h1>Search leaderboard</h1>"
        f"<p>{len(board.rows)} trials, CV {html.escape(board.metric)} ({better} is better) on "
        f"time-ordered folds of the training window; the hold-out is not used. Winner: trial "
        f"{board.best.trial}.</p><table><tr><th>rank</th><th>trial</th>{header}"
        f"<th>CV {html.escape(board.metric)} mean</th><th>std</th><th>fit seconds</th></tr>"
        f"{''.join(rows)}</table></body></html>"
    )
