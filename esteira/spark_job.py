"""What a SparkApplication runs (esteira/spark_submit.py): one Spark feature step, in the Spark image.

    spark_job.py features <settings JSON> <raw data URI> <entity rows URI to write>
    spark_job.py training-set <settings JSON> <entity rows URI> <training set URI to write>

The settings are the step's (non-secret) settings JSON; S3 credentials are the pod's env
from the esteira-s3 Secret. The same functions run locally inside the KFP tasks.
"""

from __future__ import annotations

import io
import sys


def _write(frame, uri: str, settings) -> None:  # noqa: ANN001
    from esteira.storage import open_storage

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    if uri.startswith("s3://"):
        storage = open_storage(settings.storage)
        prefix = storage.uri("")
        storage.put_bytes(uri.removeprefix(prefix).lstrip("/"), buffer.getvalue())
    else:
        with open(uri, "wb") as f:
            f.write(buffer.getvalue())


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

            publish_feature_tables(frame, contract, settings)
            _write(
                label_frame(frame, contract, settings.features.sample_every_hours), target, settings
            )
        else:
            from esteira.feast_repo import build_training_set

            _write(build_training_set(frame, settings).frame, target, settings)
    except EsteiraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
