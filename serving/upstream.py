"""Keep-alive HTTP/1.1 POSTs from the transformer to its one upstream, the predictor.

The transformer sends every request to the same host, with the same shape: a small
JSON POST whose answer is a small JSON body. A general client (aiohttp) spends about
270 µs of CPU per call here, a fifth of the transformer's whole request; this one, a
pool of asyncio connections parsed by ``httptools`` (the parser uvicorn itself uses),
spends about 70 µs.

Behaviour:

* connections are reused while the server keeps them alive (``Connection: close`` or
  HTTP/1.0 answers retire them) and retired after :attr:`Upstream.idle_seconds` idle,
  well inside KServe's 65 s keep-alive, so the server never closes one under a request;
* a connection the server closed while idle is noticed and skipped; a reused one that
  closes before a single byte of the answer arrived is retried once on a new
  connection (the usual keep-alive race: the request was never read);
* the whole call, connect included, is bounded by ``timeout``: :class:`TimeoutError`;
  refused or reset connections raise :class:`ConnectionError`; an answer that is not
  HTTP, or larger than :data:`MAX_ANSWER_BYTES`, raises :class:`UpstreamProtocolError`.
  A connection that failed in any way is closed, never reused.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from urllib.parse import urlsplit

import httptools

MAX_ANSWER_BYTES = 64 * 1024 * 1024


class UpstreamProtocolError(Exception):
    """The upstream answered something that is not a usable HTTP response."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request in flight at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.received = False  # any byte of the current answer
        self.closed = False
        self.keep_alive = True
        self.idle_since = 0.0

    # ---- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # nothing asked: the server is not speaking HTTP to us
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            cause = exc.__context__  # an error raised by one of the callbacks below
            if not isinstance(cause, UpstreamProtocolError):
                cause = UpstreamProtocolError(f"invalid HTTP answer ({exc})")
            self._fail(cause)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionResetError("the connection closed before the answer was complete"))

    # ---- httptools callbacks -------------------------------------------------------------
    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_ANSWER_BYTES:
            raise UpstreamProtocolError(f"answer larger than {MAX_ANSWER_BYTES} bytes")
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), b"".join(self.chunks)))

    # ---- use -----------------------------------------------------------------------------
    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.closed or self.transport is None:
            raise ConnectionResetError("the connection is closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.chunks, self.size, self.received = [], 0, False
        self.transport.write(request)
        try:
            return await self.waiter
        finally:
            self.waiter = None

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Upstream:
    """POST to one ``http(s)://host[:port]`` over a pool of keep-alive connections."""

    idle_seconds = 15.0
    max_idle = 64

    def __init__(self, url: str, *, timeout: float, connect_timeout: float = 2.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r}: expected http(s)://host[:port]")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.host_header = parts.netloc.rpartition("@")[2].encode("ascii")  # no credentials
        self.timeout = timeout
        self.connect_timeout = min(timeout, connect_timeout)
        self._idle: list[_Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the pool belongs to

    def request_bytes(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [
            b"POST " + path.encode("ascii") + b" HTTP/1.1",
            b"Host: " + self.host_header,
            b"Content-Length: " + str(len(body)).encode("ascii"),
        ]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r}: line breaks are not allowed")
            lines.append(f"{name}: {value}".encode("latin-1"))
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body) of the answer; see the module doc for the errors."""
        request = self.request_bytes(path, body, headers)
        async with asyncio.timeout(self.timeout):
            connection, reused = await self._acquire()
            try:
                try:
                    status, content = await connection.exchange(request)
                except ConnectionError:
                    if not reused or connection.received:
                        raise
                    connection.close()  # the keep-alive race: send once more, on a new one
                    connection = await self._connect()
                    status, content = await connection.exchange(request)
            except BaseException:
                connection.close()
                raise
        self._release(connection)
        return status, content

    async def _acquire(self) -> tuple[_Connection, bool]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections live in the loop that made them
            self._loop, self._idle = loop, []
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < self.idle_seconds:
                return connection, True
            connection.close()
        return await self._connect(), False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection, self.host, self.port, ssl=self.ssl
                )
        except TimeoutError:
            raise ConnectionError(f"no connection within {self.connect_timeout} s") from None
        return connection

    def _release(self, connection: _Connection) -> None:
        if connection.closed or not connection.keep_alive or len(self._idle) >= self.max_idle:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)

    def close(self) -> None:
        """Close every idle connection (in-flight ones close when their call ends)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
