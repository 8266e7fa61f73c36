"""The transformer's client to the predictor (``serving.upstream``), against real sockets.

Each test runs a small asyncio server on 127.0.0.1 that answers the way a predictor,
a proxy or a broken peer would, and counts the connections it accepted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from serving import upstream as upstream_module
from serving.transformer import Transformer, _request_id
from serving.upstream import Upstream, UpstreamProtocolError


class Peer:
    """A server on 127.0.0.1 that reads each request and answers with ``respond``."""

    def __init__(self, respond: Callable[[bytes, int], Awaitable[bytes | None]]) -> None:
        self.respond = respond
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.honour_close = True  # False: say "connection: close" and keep reading anyway

    async def __aenter__(self) -> Peer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = await self.respond(request, len(self.requests))
                if answer is None:  # hang up without answering
                    break
                writer.write(answer)
                await writer.drain()
                if self.honour_close and b"connection: close" in answer.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def ok(body: bytes = b'{"ok": true}', extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n"
        + extra
        + b"\r\n"
        + body
    )


async def echo(request: bytes, _: int) -> bytes:
    return ok(request.split(b"\r\n\r\n", 1)[1])


def run(coroutine: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 30))


def test_requests_reuse_one_connection_and_carry_body_and_headers() -> None:
    async def main() -> None:
        async with Peer(echo) as peer:
            client = Upstream(peer.url, timeout=5)
            for i in range(20):
                body = b'{"n": %d}' % i
                status, answer = await client.post("/v1/models/m:predict", body, {"X-Id": "a"})
                assert (status, answer) == (200, body)
            client.close()
            assert peer.connections == 1
            first = peer.requests[0]
            assert first.startswith(b"POST /v1/models/m:predict HTTP/1.1\r\n")
            assert b"\r\nX-Id: a\r\n" in first and b"\r\nHost: 127.0.0.1:" in first

    run(main())


def test_a_client_used_from_a_new_event_loop_opens_new_connections() -> None:
    import threading

    async def serve_until(stop: threading.Event, ready: list) -> None:
        async with Peer(echo) as peer:
            ready.append(peer)
            while not stop.is_set():
                await asyncio.sleep(0.01)

    stop, ready = threading.Event(), []
    server = threading.Thread(target=asyncio.run, args=(serve_until(stop, ready),))
    server.start()
    try:
        while not ready:
            threading.Event().wait(0.01)
        client = Upstream(ready[0].url, timeout=5)
        for _ in range(2):  # each asyncio.run is a new loop; the old one is closed
            assert asyncio.run(client.post("/p", b"{}", {})) == (200, b"{}")
        assert ready[0].connections == 2
    finally:
        stop.set()
        server.join(10)


def test_concurrent_requests_each_get_their_own_answer() -> None:
    async def slow_echo(request: bytes, n: int) -> bytes:
        await asyncio.sleep(0.01 * (n % 3))
        return await echo(request, n)

    async def main() -> None:
        async with Peer(slow_echo) as peer:
            client = Upstream(peer.url, timeout=5)
            bodies = [b'{"n": %d}' % i for i in range(12)]
            answers = await asyncio.gather(*(client.post("/p", b, {}) for b in bodies))
            assert [a for _, a in answers] == bodies
            assert peer.connections <= 12
            again = await client.post("/p", b"{}", {})  # pooled connections are reused
            assert again == (200, b"{}") and peer.connections <= 12
            client.close()

    run(main())


def test_chunked_answers_are_read_whole() -> None:
    async def chunked(request: bytes, _: int) -> bytes:
        return (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b'5\r\n{"a":\r\n3\r\n 1}\r\n0\r\n\r\n'
        )

    async def main() -> None:
        async with Peer(chunked) as peer:
            client = Upstream(peer.url, timeout=5)
            assert await client.post("/p", b"{}", {}) == (200, b'{"a": 1}')
            assert await client.post("/p", b"{}", {}) == (200, b'{"a": 1}')
            assert peer.connections == 1
            client.close()

    run(main())


def test_connection_close_answers_retire_the_connection() -> None:
    async def closing(request: bytes, _: int) -> bytes:
        return ok(extra=b"connection: close\r\n")

    async def main() -> None:
        async with Peer(closing) as peer:
            peer.honour_close = False  # the client must retire it on the header alone
            client = Upstream(peer.url, timeout=5)
            for _ in range(3):
                assert (await client.post("/p", b"{}", {}))[0] == 200
            assert peer.connections == 3
            client.close()

    run(main())


def test_a_connection_the_server_dropped_while_idle_is_not_used() -> None:
    async def main() -> None:
        async with Peer(echo) as peer:
            client = Upstream(peer.url, timeout=5)
            assert (await client.post("/p", b"{}", {}))[0] == 200
            for writer in peer.writers:  # the server's keep-alive timeout
                writer.close()
            await asyncio.sleep(0.05)
            assert (await client.post("/p", b"{}", {}))[0] == 200
            assert peer.connections == 2
            client.close()

    run(main())


def test_the_keep_alive_race_is_retried_once_on_a_new_connection() -> None:
    async def hang_up_on_the_second(request: bytes, n: int) -> bytes | None:
        return None if n == 2 else ok()

    async def main() -> None:
        async with Peer(hang_up_on_the_second) as peer:
            client = Upstream(peer.url, timeout=5)
            assert (await client.post("/p", b"{}", {}))[0] == 200
            assert (await client.post("/p", b"{}", {}))[0] == 200  # closed unanswered: resent
            assert len(peer.requests) == 3 and peer.connections == 2
            client.close()

    run(main())


def test_a_new_connection_closed_unanswered_is_an_error_not_a_retry() -> None:
    async def hang_up(request: bytes, n: int) -> None:
        return None

    async def main() -> None:
        async with Peer(hang_up) as peer:
            client = Upstream(peer.url, timeout=5)
            with pytest.raises(ConnectionError):
                await client.post("/p", b"{}", {})
            assert len(peer.requests) == 1
            client.close()

    run(main())


def test_a_slow_answer_times_out_and_its_connection_is_dropped() -> None:
    async def slow(request: bytes, n: int) -> bytes:
        if n == 1:
            await asyncio.sleep(2)
        return ok()

    async def main() -> None:
        async with Peer(slow) as peer:
            client = Upstream(peer.url, timeout=0.2)
            with pytest.raises(TimeoutError):
                await client.post("/p", b"{}", {})
            assert client._idle == []
            assert (await client.post("/p", b"{}", {}))[0] == 200
            assert peer.connections == 2
            client.close()

    run(main())


@pytest.mark.parametrize(
    "answer", [b"SSH-2.0-OpenSSH_9.2\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n"], ids=["ssh", "bad status"]
)
def test_an_answer_that_is_not_http_is_a_protocol_error(answer: bytes) -> None:
    async def garbage(request: bytes, n: int) -> bytes:
        return answer

    async def main() -> None:
        async with Peer(garbage) as peer:
            client = Upstream(peer.url, timeout=5)
            with pytest.raises(UpstreamProtocolError, match="invalid HTTP answer"):
                await client.post("/p", b"{}", {})
            assert client._idle == []
            client.close()

    run(main())


def test_an_oversized_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream_module, "MAX_ANSWER_BYTES", 1000)

    async def big(request: bytes, n: int) -> bytes:
        return ok(b"x" * 5000)

    async def main() -> None:
        async with Peer(big) as peer:
            client = Upstream(peer.url, timeout=5)
            with pytest.raises(UpstreamProtocolError, match="larger than 1000 bytes"):
                await client.post("/p", b"{}", {})
            client.close()

    run(main())


def test_nobody_listening_is_a_connection_error() -> None:
    from esteira.net import free_port

    async def main() -> None:
        client = Upstream(f"http://127.0.0.1:{free_port()}", timeout=5)
        with pytest.raises(ConnectionError):
            await client.post("/p", b"{}", {})

    run(main())


def test_header_injection_is_refused_and_bad_request_ids_are_replaced() -> None:
    client = Upstream("http://127.0.0.1:9", timeout=1)
    with pytest.raises(ValueError, match="line breaks"):
        client.request_bytes("/p", b"{}", {"X-Request-Id": "a\r\nEvil: 1"})
    assert _request_id({"x-request-id": "req-42"}) == "req-42"
    for bad in ("", "a\r\nEvil: 1", "é", "x" * 129):
        replaced = _request_id({"x-request-id": bad})
        assert replaced != bad and len(replaced) == 32
    with pytest.raises(ValueError, match="http"):
        Upstream("ftp://host", timeout=1)
    with_user = Upstream("http://user:secret@predictor.ns:8080", timeout=1)
    assert b"Host: predictor.ns:8080\r\n" in with_user.request_bytes("/p", b"{}", {})
    assert b"secret" not in with_user.request_bytes("/p", b"{}", {})


@pytest.mark.parametrize(
    ("respond", "status", "words"),
    [
        (lambda: ok(b"not json"), 502, "invalid JSON"),
        (lambda: b"HTTP/1.1 500 Oops\r\ncontent-length: 17\r\n\r\n{\"error\": \"boom\"}", 502,
         "HTTP 500: boom"),
        (lambda: b"HTTP/1.1 503 Busy\r\ncontent-length: 2\r\n\r\n{}", 503, "HTTP 503"),
        (lambda: b"NOT HTTP AT ALL\r\n\r\n", 502, "invalid HTTP answer"),
        (None, 504, "serving.timeout_seconds"),
    ],
    ids=["invalid json", "500", "503", "not http", "timeout"],
)  # fmt: skip
def test_the_transformer_maps_predictor_failures_to_gateway_errors(
    respond: Callable[[], bytes] | None, status: int, words: str
) -> None:
    from esteira.config import Settings

    async def answer(request: bytes, n: int) -> bytes:
        if respond is None:
            await asyncio.sleep(2)
            return ok()
        return respond()

    async def main() -> None:
        async with Peer(answer) as peer:
            settings = Settings.model_validate({"serving": {"timeout_seconds": 0.3}})
            transformer = Transformer(settings, predictor_host=peer.url, online=object())
            with pytest.raises(Exception) as caught:
                await transformer._call_predictor({"instances": []}, "rid")
            assert caught.value.http_status == status
            assert words in caught.value.message and "predictor at http://127.0.0.1" in str(
                caught.value
            )
            transformer.stop()

    run(main())
