"""Batch prediction throughput next to raw ``model.predict`` on the same rows.

Needs a production model (``make run``). Entity rows are the last ``days`` of the
configured training data, every hour; their features come from Feast (timed as
``retrieval``). The scoring comparison then replicates those feature rows to at least
``min_rows`` and times, best of ``repeats`` taken in turns (so background load hits
both alike):

* ``raw_predict``: ``model.predict(X)`` on the whole frame, nothing else;
* ``batch``: ``components.batch_predict.logic.predict_frame``: chunked ``predict_proba``, the
  decision at the version's threshold and the prediction-log columns.

The acceptance bar is ``batch / raw_predict >= 0.8``. Results: ``<out_dir>/batch.json``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from esteira.config import Settings, load_settings


def _best_interleaved(fns: list[Callable[[], Any]], repeats: int) -> list[float]:
    """Best wall time of each function, run in turns so machine load hits them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            started = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def _entity_rows(settings: Settings, days: int) -> pd.DataFrame:
    from components.batch_predict.logic import entity_rows
    from esteira.contract import load_contract
    from esteira.ingest import ingest

    contract = load_contract(settings.features.repo_path)
    raw = ingest(settings.data.source_uri, settings, contract).frame
    recent = raw.loc[
        raw[contract.timestamp] >= raw[contract.timestamp].max() - pd.Timedelta(days=days)
    ]
    return entity_rows(recent, contract, every_hours=1)


def run(
    out_dir: str | Path = "dist/bench",
    *,
    settings: Settings | None = None,
    days: int = 7,
    min_rows: int = 500_000,
    repeats: int = 5,
) -> dict[str, Any]:
    """Measure and write ``batch.json``; returns the numbers."""
    from components.batch_features import logic as bf
    from components.batch_predict import logic as bp
    from esteira.contract import load_contract
    from esteira.registry import registry_for

    settings = (settings or load_settings()).resolved()
    contract = load_contract(settings.features.repo_path)
    model = bp.load_production_model(registry_for(settings))
    rows = _entity_rows(settings, days)
    started = time.perf_counter()
    features = bf.historical_features(rows, settings).frame
    retrieval = time.perf_counter() - started

    copies = max(1, -(-min_rows // max(len(features), 1)))
    frame = pd.concat([features] * copies, ignore_index=True)
    X = frame[model.feature_names]
    raw_s, batch_s = _best_interleaved(
        [
            lambda: model.model.predict(X),
            lambda: bp.predict_frame(
                model, frame, entity=contract.keys, run_id="bench", progress=None
            ),
        ],
        repeats,
    )
    n = len(frame)
    result = {
        "model": f"{model.name} v{model.version}",
        "entity_rows": len(rows),
        "retrieval": {
            "rows": len(features),
            "seconds": round(retrieval, 3),
            "rows_per_s": round(len(features) / retrieval, 1),
        },
        "raw_predict": {"rows": n, "seconds": round(raw_s, 4), "rows_per_s": round(n / raw_s, 1)},
        "batch_predict": {
            "rows": n,
            "seconds": round(batch_s, 4),
            "rows_per_s": round(n / batch_s, 1),
            "chunk_rows": bp.DEFAULT_CHUNK_ROWS,
        },
        "ratio": round(raw_s / batch_s, 3),
        "meets_0_8": raw_s / batch_s >= 0.8,
        "repeats": repeats,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
