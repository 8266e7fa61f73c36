"""Shared fixtures: real servers on 127.0.0.1 that start and stop with the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from esteira.net import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent

# Planted credentials: real enough for the loopback S3 server; the secret-scan tests look for them.
S3_ACCESS_KEY = "esteiraTESTaccessKEY7Q"
S3_SECRET_KEY = "esteira-test-secret-9f3b2c81d4e6a7"


class S3Server:
    """moto's S3-compatible HTTP server on loopback; stoppable mid-test for fault tests."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        if self._server is None:  # restarted on the same port; moto keeps its data in-process
            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        wait_for_port(self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_settings(s3_server: S3Server):
    from esteira.config import StorageSettings

    # moto keeps buckets across server instances in one process: a fresh bucket per test
    bucket = f"esteira-test-{uuid.uuid4().hex[:12]}"
    return StorageSettings(kind="s3", endpoint=s3_server.endpoint, bucket=bucket, retries=1)


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def connection(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not shutil.which("redis-server"):
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing in CI: `make deps` should have installed it")
        pytest.skip("redis-server not installed (make deps installs it)")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
