"""The ``load_predictions`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from kfp.dsl import Dataset, Output

from esteira.kfp_support import component


@component
def load_predictions(config: str, start: str, end: str, predictions: Output[Dataset]) -> int:
    """Logged predictions with event_timestamp in [start, end) (newest per entity and time)."""
    from components.load_predictions.logic import logged_predictions
    from esteira.config import settings_from_json
    from esteira.errors import DataError
    from esteira.kfp_support import guarded

    with guarded("load-predictions"):
        frame = logged_predictions(settings_from_json(config), start or None, end or None)
        if frame.empty:
            raise DataError(
                "prediction log", f"has no predictions in [{start}, {end})", "run a batch first"
            )
        frame.to_parquet(predictions.path, index=False)
        predictions.metadata.update({"rows": len(frame), "start": start, "end": end})
        print(f"{len(frame)} logged predictions in [{start or '-inf'}, {end or 'inf'})")
        return len(frame)
