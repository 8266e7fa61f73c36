"""What a SparkApplication runs (esteira/spark_submit.py): one Spark feature step, in the Spark image.

    spark_job.py features <settings JSON> <raw data URI> <entity rows URI to write>
    spark_job.py training-set <settings JSON> <entity rows URI> <training set URI to write>

The settings are the step's (non-secret) settings JSON; S3 credentials are the pod's env
from the esteira-s3 Secret. The same functions run locally inside the KFP tasks. Beside the
output the job writes its summary, ``<output URI>.json`` (the published tables; the training
set's feature names and TTL drops), which the waiting task reads (spark_submit.run_step).
"""

from __future__ import annotations

import io
import json
import sys


def _put(data: bytes, uri: str, settings) -> None:  # noqa: ANN001
    from esteira.storage import open_storage

    if uri.startswith("s3://"):
        storage = open_storage(settings.storage)
        prefix = storage.uri("")
        storage.put_bytes(uri.removeprefix(prefix).lstrip("/"), data)
    else:
        with open(uri, "wb") as f:
            f.write(data)


def _write(frame, uri: str, settings, summary: dict | None = None) -> None:  # noqa: ANN001
    """The step's output at ``uri``, then its summary at ``uri + '.json'`` (written last: a
    task that finds the summary finds the output)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    _put(buffer.getvalue(), uri, settings)
    _put(json.dumps(summary or {}, sort_keys=True, default=str).encode(), f"{uri}.json", settings)


def main(argv: list[str]) -> int:
    from esteira.config import settings_from_json
    from esteira.contract import load_contract
    from esteira.errors import EsteiraError
    from esteira.parquet import read_parquet
    from esteira.storage import read_uri

    if len(argv) != 4 or argv[0] not in ("features", "training-set"):
        print(__doc__, file=sys.stderr)
        return 2
    step, config, source, target = argv
    try:
        settings = settings_from_json(config)
        contract = load_contract(settings.features.repo_path)
        frame = read_parquet(read_uri(source, settings.storage))
        if step == "features":
            from esteira.feature_engine import publish_feature_tables
            from esteira.features import label_frame

            published = publish_feature_tables(frame, contract, settings)
            rows = label_frame(frame, contract, settings.features.sample_every_hours)
            _write(rows, target, settings, {"published": published})
        else:
            from esteira.feast_repo import apply_definitions, build_training_set

            # the driver pod has no registry of the task's: with features.registry_path its
            # first store builds one; without, register the definitions here (only what
            # differs is written; the task applied the same ones)
            apply_definitions(settings)
            result = build_training_set(frame, settings)
            summary = {
                "feature_service": result.feature_service,
                "feature_names": result.feature_names,
                "requested_rows": result.requested_rows,
                "dropped_by_ttl": result.dropped_by_ttl,
                "dropped_share": result.dropped_share,
                "seconds": result.seconds,
            }
            _write(result.frame, target, settings, summary)
    except EsteiraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
