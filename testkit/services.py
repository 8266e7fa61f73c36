"""Real servers on 127.0.0.1 for tests and benchmarks: moto's S3 server and redis-server, on free ports."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Self

from esteira.net import free_port, wait_for_port

# Planted credentials: real enough for the loopback S3 server; the secret-scan tests look for them.
S3_ACCESS_KEY = "esteiraTESTaccessKEY7Q"
S3_SECRET_KEY = "esteira-test-secret-9f3b2c81d4e6a7"


def _atomic_conditional_puts(app):
    """WSGI middleware: one conditional PUT (``If-None-Match``/``If-Match``) at a time.

    S3 and MinIO make a conditional write atomic: of two concurrent create-if-absent PUTs on one
    key, exactly one succeeds. moto checks, then writes, in two steps, so under a threaded server
    both can succeed. Serialising those requests gives the loopback server S3's guarantee, which
    the registry's version claims rely on. Other requests still run concurrently.
    """
    lock = threading.Lock()

    def wrapped(environ, start_response):
        conditional = environ.get("REQUEST_METHOD") == "PUT" and (
            "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MATCH" in environ
        )
        if not conditional:
            return app(environ, start_response)
        with lock:  # the whole body is produced inside: moto writes while answering
            return list(app(environ, start_response))

    return wrapped


def _moto_server(port: int):
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class AtomicMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = _atomic_conditional_puts(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return AtomicMotoServer(ip_address="127.0.0.1", port=port, verbose=False)


class _Service:
    """A server a test starts and stops; ``with Server(...) as server:`` stops it at the end."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


class S3Server(_Service):
    """moto's S3-compatible HTTP server on loopback; stoppable mid-test for fault tests."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self._server = _moto_server(self.port)

    def start(self) -> None:
        if self._server is None:  # restarted on the same port; moto keeps its data in-process
            self._server = _moto_server(self.port)
        self._server.start()
        wait_for_port(self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


class RedisServer(_Service):
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
