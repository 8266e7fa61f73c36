"""The ``validate`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from kfp.dsl import Dataset, Input, Metrics, Output

from esteira.kfp_support import component


@component
def validate(config: str, dataset: Input[Dataset], report: Output[Metrics]):
    """Check the dataset contract; any violation fails the task and stops the pipeline."""
    from components.validate.logic import validate as run
    from esteira.config import settings_from_json
    from esteira.contract import load_contract
    from esteira.kfp_support import guarded, write_json
    from esteira.parquet import read_parquet

    with guarded("validate"):
        settings = settings_from_json(config)
        result = run(
            read_parquet(dataset.path),
            load_contract(settings.features.repo_path),
            settings.validation,
        )
        report.log_metric("rows", result.rows)
        report.log_metric("violations", len(result.violations))
        for column, ratio in result.null_ratios.items():
            report.log_metric(f"null_ratio.{column}", ratio)
        # the figures as a file too: a cached result needs its artifact's file to exist
        write_json(report.path, dict(report.metadata))
        result.raise_for_violations()
        print(f"{result.rows} rows valid against the contract")
