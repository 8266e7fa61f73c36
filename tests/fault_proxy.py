"""A fault-injecting HTTP proxy on 127.0.0.1: real sockets, answers lost on purpose.

It sits in front of a loopback HTTP server (the moto S3 server) and forwards each
request to it on a fresh connection. For a request that matches a planted fault the
server still receives and executes the request, but its answer never reaches the
client: the proxy cuts the client's connection (``"cut"``) or holds it open and silent
until the client gives up (``"hang"``). That is what a dropped packet, a proxy reset or
a network partition looks like to the client after the server has acted.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

from esteira.net import free_port

_HEAD_LIMIT = 64 * 1024


@dataclass
class Fault:
    method: str
    path_suffix: str
    mode: str = "cut"  # "cut": close the client connection; "hang": say nothing
    times: int = 1  # how many matching requests lose their answer


@dataclass
class FaultProxy:
    upstream_port: int
    port: int = field(default_factory=free_port)
    faults: list[Fault] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (method, path) forwarded
    dropped: list[tuple[str, str]] = field(default_factory=list)  # answers lost on purpose

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._threads: list[threading.Thread] = []

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def drop(self, method: str, path_suffix: str, mode: str = "cut", times: int = 1) -> None:
        """Lose the answer to the next ``times`` requests ``method`` .../``path_suffix``."""
        with self._lock:
            self.faults.append(Fault(method, path_suffix, mode, times))

    def start(self) -> FaultProxy:
        self._spawn(self._accept)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- internals -------------------------------------------------------------------
    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve, client)

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and path.endswith(fault.path_suffix):
                    fault.times -= 1
                    self.dropped.append((method, path))
                    return fault
        return None

    def _serve(self, client: socket.socket) -> None:
        """Requests of one client connection, in turn, until it closes or a fault cuts it."""
        client.settimeout(0.2)
        buffer = b""
        with client:
            while not self._stop.is_set():
                request, buffer = _read_request(client, buffer, self._stop)
                if request is None:
                    return
                method, path, raw = request
                self.seen.append((method, path))
                answer = _forward(self.upstream_port, raw)
                fault = self._fault_for(method, path)
                if fault is None:
                    client.sendall(answer)
                    continue
                if fault.mode == "hang":  # silent until the client gives up or we stop
                    while not self._stop.is_set():
                        try:
                            if not client.recv(65536):
                                break
                        except TimeoutError:
                            continue
                        except OSError:
                            break
                return  # "cut": the answer is lost with the connection


def _recv(sock: socket.socket, stop: threading.Event) -> bytes | None:
    while not stop.is_set():
        try:
            return sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return b""
    return None


def _read_request(
    sock: socket.socket, buffer: bytes, stop: threading.Event
) -> tuple[tuple[str, str, bytes] | None, bytes]:
    """One request (method, path, bytes rewritten with ``Connection: close``) and the rest."""
    while b"\r\n\r\n" not in buffer:
        chunk = _recv(sock, stop)
        if not chunk or len(buffer) > _HEAD_LIMIT:
            return None, b""
        buffer += chunk
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = [line for line in lines[1:] if not line.lower().startswith("connection:")]
    length = 0
    for line in headers:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        if name.strip().lower() == "transfer-encoding":
            raise AssertionError("the fault proxy does not forward chunked request bodies")
    while len(buffer) < length:
        chunk = _recv(sock, stop)
        if not chunk:
            return None, b""
        buffer += chunk
    body, buffer = buffer[:length], buffer[length:]
    raw = "\r\n".join([lines[0], *headers, "Connection: close", "", ""]).encode("latin-1") + body
    return (method, path.split("?", 1)[0], raw), buffer


def _forward(port: int, raw: bytes) -> bytes:
    """Send one request to the server and read its whole answer (it closes after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as upstream:
        upstream.sendall(raw)
        parts = []
        while chunk := upstream.recv(65536):
            parts.append(chunk)
    return b"".join(parts)
