"""The ``search_trials`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from kfp.dsl import Dataset, Input, Output

from esteira.kfp_support import component


@component
def search_trials(batch: dict, training_set: Input[Dataset], predictions: Output[Dataset]) -> dict:
    """One batch of search trials (the batch carries the settings), each scored on time-ordered CV folds of the training window (one thread per estimator)."""
    import os

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"  # before numpy/scikit-learn load; the task sets them too

    from esteira.config import settings_from_json
    from esteira.kfp_support import guarded

    with guarded("search-trials"):
        if not batch.get("trials"):  # the search is off: one empty batch, nothing to load
            os.makedirs(os.path.dirname(predictions.path), exist_ok=True)
            open(predictions.path, "wb").close()
            return {"batch": int(batch.get("batch", 0)), "results": []}

        from components.search_trials.logic import oof_frame, run_trials
        from esteira.contract import load_contract
        from esteira.parquet import read_parquet
        from esteira.search import coerce_trial, space_for

        # the batch carries the settings (plan-search): kfp.local 2.17 hands a ParallelFor
        # body the loop item in place of any other upstream task's parameter
        settings = settings_from_json(batch["config"])
        trials = [coerce_trial(t, space_for(settings.model)) for t in batch["trials"]]
        contract = load_contract(settings.features.repo_path)
        label = contract.label
        frame = read_parquet(training_set.path)
        features = list(training_set.metadata["feature_names"])
        results, folds = run_trials(
            frame,
            trials,
            features,
            label.name,
            settings.model,
            purge_hours=label.horizon_hours,
            text=contract.text_features,
        )
        oof_frame(folds, results, label.name).to_parquet(predictions.path, index=False)
        for r in results:
            print(f"trial {r.trial}: {r.mean:.4f} ± {r.std:.4f} in {r.fit_seconds:.1f}s {r.params}")
        return {"batch": int(batch.get("batch", 0)), "results": [r.as_dict() for r in results]}
