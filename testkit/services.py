"""Real servers on 127.0.0.1 for tests and benchmarks: moto's S3 server and redis-server, on free ports."""

from __future__ import annotations

import subprocess
from pathlib import Path

from esteira.net import free_port, wait_for_port

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
