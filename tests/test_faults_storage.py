"""Faults on the S3 endpoint: down at start, stopped in the middle of a registration."""

import time

import pytest

from esteira.errors import StorageError
from esteira.registry import Registry
from esteira.storage import S3Storage

FILES = {"model.joblib": b"model-bytes", "reference.json": b"{}"}


def test_endpoint_down_at_start_retries_with_backoff_then_fails_clearly(s3_server, s3_settings):
    s3_server.stop()
    store = S3Storage(s3_settings.model_copy(update={"retries": 2}))
    started = time.monotonic()
    with pytest.raises(StorageError) as err:
        Registry(store, "machine-failure").register(FILES, {"metrics": {}})
    elapsed = time.monotonic() - started
    assert "after 3 attempts" in err.value.message and "storage.endpoint" in err.value.message
    assert elapsed >= 0.2 + 0.4  # backed off between the attempts


class StopsAfterModelUpload(S3Storage):
    """A real fault: the S3 server goes down right after the model file is uploaded."""

    def __init__(self, settings, server):
        super().__init__(settings)
        self.server = server

    def put_if_absent(self, key: str, data: bytes) -> bool:
        created = super().put_if_absent(key, data)
        if key.endswith("/model.joblib"):
            self.server.stop()
        return created


def test_endpoint_stopped_mid_registration_leaves_no_partial_version_and_loses_nothing(
    s3_server, s3_settings
):
    registry = Registry(S3Storage(s3_settings), "machine-failure")
    v1 = registry.register(FILES, {"metrics": {"roc_auc": 0.9}})
    registry.set_alias("production", v1.version, "first")

    faulty = Registry(StopsAfterModelUpload(s3_settings, s3_server), "machine-failure")
    with pytest.raises(StorageError, match="attempts"):
        faulty.register(FILES, {"metrics": {"roc_auc": 0.95}})

    s3_server.start()
    assert [v.version for v in registry.versions()] == [1]  # v2 was never committed: invisible
    assert registry.read_file(1, "model.joblib") == b"model-bytes"
    assert registry.aliases() == {"production": 1}
    assert registry.register(FILES, {"metrics": {}}).version == 3  # the burned number is not reused
