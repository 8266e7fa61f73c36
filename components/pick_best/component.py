"""The ``pick_best`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from typing import NamedTuple

from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from esteira.kfp_support import component


@component
def pick_best(
    config: str,
    results: list,
    predictions: Input[list[Dataset]],
    leaderboard: Output[Metrics],
    table: Output[HTML],
    winner_predictions: Output[Dataset],
) -> NamedTuple("Outputs", [("config", str), ("winner", dict)]):  # noqa: UP014
    """The search's leaderboard (Metrics and an HTML table), the winner's out-of-fold predictions, and the settings with its hyperparameters (unchanged when the search is off)."""
    import os
    from collections import namedtuple
    from pathlib import Path

    from components.pick_best import logic
    from esteira.config import settings_from_json, settings_to_json
    from esteira.contract import load_contract
    from esteira.kfp_support import guarded

    with guarded("pick-best"):
        settings = settings_from_json(config)
        board = logic.pick(list(results), settings.model)
        Path(table.path).parent.mkdir(parents=True, exist_ok=True)
        Path(table.path).write_text(logic.render_html(board))
        os.makedirs(os.path.dirname(winner_predictions.path), exist_ok=True)
        if board is None:
            Path(winner_predictions.path).write_bytes(b"")  # no search, no predictions
            winner_predictions.metadata["search"] = False
            print("search off: train uses model.hyperparameters")
        else:
            for name, value in logic.metrics(board).items():
                leaderboard.log_metric(name, value)
            from esteira.parquet import read_parquet

            label = load_contract(settings.features.repo_path).label.name
            frames = [read_parquet(p.path) for p in predictions if os.path.getsize(p.path)]
            oof = logic.winner_predictions(frames, board.best.trial, label)
            oof.to_parquet(winner_predictions.path, index=False)
            winner_predictions.metadata.update(
                {"search": True, "trial": board.best.trial, "label": label, "rows": len(oof)}
            )
            best = board.best
            print(
                f"winner: trial {best.trial} of {len(board.rows)}, CV {board.metric} "
                f"{best.mean:.4f} ± {best.std:.4f}: {best.params}"
            )
        outputs = namedtuple("Outputs", ["config", "winner"])
        chosen = logic.winner_settings(settings, board)
        return outputs(settings_to_json(chosen), logic.winner_summary(board, settings.model))
