"""The ``train`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from kfp.dsl import Dataset, Input, Model, Output

from esteira.kfp_support import component


@component
def train(
    config: str,
    training_set: Input[Dataset],
    search_predictions: Input[Dataset],
    model: Output[Model],
    holdout: Output[Dataset],
):
    """Fit the configured scikit-learn Pipeline on the past; keep the future as hold-out.

    ``search_predictions``: the search winner's out-of-fold predictions (pick-best); a
    classifier's decision_threshold is chosen on them when a search ran, else on a
    validation slice at the end of the training window."""
    import os
    from pathlib import Path

    from components.train.logic import train_step
    from esteira.config import settings_from_json
    from esteira.contract import load_contract
    from esteira.kfp_support import guarded, write_json
    from esteira.parquet import read_parquet, release_unused_memory
    from esteira.safe_load import dump_model

    with guarded("train"):
        settings = settings_from_json(config)
        contract = load_contract(settings.features.repo_path)
        frame = read_parquet(training_set.path)
        features = list(training_set.metadata["feature_names"])
        oof = None
        if search_predictions.metadata.get("search"):
            oof = read_parquet(search_predictions.path)
        release_unused_memory()  # the reads' Arrow buffers, before the fits
        result, info = train_step(frame, features, contract, settings, search_predictions=oof)
        os.makedirs(model.path, exist_ok=True)
        Path(model.path, "model.joblib").write_bytes(dump_model(result.model))
        write_json(os.path.join(model.path, "training.json"), info)
        keys = ("family", "task", "decision_threshold")
        model.metadata.update(
            {"framework": "scikit-learn", **{k: info[k] for k in keys if k in info}}
        )
        if result.threshold is not None:
            model.metadata["threshold_policy"] = result.threshold.policy
        result.holdout.to_parquet(holdout.path, index=False)
        print(
            f"trained {settings.model.family} on {result.training_rows} rows; hold-out {len(result.holdout)} rows"
        )
        if result.threshold is not None:
            t = result.threshold
            print(f"decision_threshold {t.decision_threshold:.4f} ({t.policy}; {t.chosen_on})")
