"""Shared fixtures: real servers on 127.0.0.1 that start and stop with the tests."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# One OpenMP thread per process: the tests run two workers, each starting servers and pipeline
# tasks, on a 2-core machine, where scikit-learn's OpenMP threads spinning for a core the
# other processes hold made one small fit take 70 s instead of 3 s.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from testkit.services import S3_ACCESS_KEY, S3_SECRET_KEY, RedisServer, S3Server


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with S3Server() as server:
        yield server


@pytest.fixture
def s3_settings(s3_server: S3Server):
    from esteira.config import StorageSettings

    # moto keeps buckets across server instances in one process: a fresh bucket per test
    bucket = f"esteira-test-{uuid.uuid4().hex[:12]}"
    return StorageSettings(kind="s3", endpoint=s3_server.endpoint, bucket=bucket, retries=1)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not shutil.which("redis-server"):
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing in CI: `make deps` should have installed it")
        pytest.skip("redis-server not installed (make deps installs it)")
    with RedisServer(tmp_path) as server:
        yield server


@pytest.fixture
def kserve_schemas() -> Path:
    """KServe's CRD schemas (shared/ beside the repo in CI, or $ESTEIRA_KSERVE_SCHEMAS)."""
    from esteira.manifests import kserve_schema_dir

    path = kserve_schema_dir()
    if not (path / "inferenceservice_v1beta1.json").is_file():
        message = f"KServe CRD schemas not found in {path}; set ESTEIRA_KSERVE_SCHEMAS"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def demand(tmp_path_factory: pytest.TempPathFactory):
    """The demand forecasting use case at a tiny size (3 stores x 5 items x 120 days), its
    features published and applied once per session: (settings, contract, raw data)."""
    from testkit.demand import demand_store, generate

    raw = generate(stores=3, items=5, days=120, seed=7)
    settings, contract = demand_store(
        tmp_path_factory.mktemp("demand"), raw, model={"hyperparameters": {"max_iter": 80}}
    )
    return settings, contract, raw
