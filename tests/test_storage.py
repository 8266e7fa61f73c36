import threading
import time

import pytest

from esteira.config import StorageSettings
from esteira.errors import StorageError
from esteira.storage import LocalStorage, open_storage, read_uri


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    return open_storage(request.getfixturevalue("s3_settings"))


def test_put_get_list_exists_delete(storage):
    storage.put_bytes("a/b/one.txt", b"1")
    storage.put_bytes("a/bb/two.txt", b"2")
    storage.put_bytes("a/b/one.txt", b"one")  # overwrite is atomic
    assert storage.get_bytes("a/b/one.txt") == b"one"
    assert storage.list("a/b") == ["a/b/one.txt"]  # a prefix is a folder, not a string prefix
    assert storage.list("a") == ["a/b/one.txt", "a/bb/two.txt"]
    assert storage.exists("a/bb/two.txt") and not storage.exists("a/zz")
    storage.delete("a/bb/two.txt")
    assert not storage.exists("a/bb/two.txt")
    with pytest.raises(StorageError, match="no object"):
        storage.get_bytes("a/missing")


def test_put_if_absent_has_exactly_one_winner(storage):
    results: list[bool] = []
    threads = [
        threading.Thread(
            target=lambda i=i: results.append(storage.put_if_absent("claim", str(i).encode()))
        )
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    assert storage.get_bytes("claim") in {str(i).encode() for i in range(8)}


def test_keys_cannot_escape_the_root(tmp_path):
    with pytest.raises(StorageError, match="may not contain"):
        LocalStorage(tmp_path).put_bytes("../evil", b"x")


def test_s3_down_retries_then_fails_clearly(s3_server, s3_settings):
    store = open_storage(s3_settings)
    store.put_bytes("x", b"1")
    s3_server.stop()
    started = time.monotonic()
    with pytest.raises(StorageError) as err:
        store.get_bytes("x")
    assert "storage.endpoint" in err.value.message and "attempts" in err.value.message
    assert time.monotonic() - started < 30


def test_read_uri_local_s3_and_http(tmp_path, s3_settings):
    import http.server
    import socketserver

    path = tmp_path / "data.csv"
    path.write_bytes(b"a,b\n1,2\n")
    assert read_uri(str(path), s3_settings) == b"a,b\n1,2\n"

    open_storage(s3_settings).put_bytes("raw/data.csv", b"from-s3")
    assert read_uri(f"s3://{s3_settings.bucket}/raw/data.csv", s3_settings) == b"from-s3"

    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    with socketserver.TCPServer(("127.0.0.1", 0), handler) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        port = httpd.server_address[1]
        assert read_uri(f"http://127.0.0.1:{port}/data.csv", s3_settings) == b"a,b\n1,2\n"
        with pytest.raises(StorageError, match="HTTP 404"):
            read_uri(f"http://127.0.0.1:{port}/missing.csv", s3_settings)
        httpd.shutdown()

    with pytest.raises(StorageError, match="no file"):
        read_uri(str(tmp_path / "missing.csv"), s3_settings)
    with pytest.raises(StorageError, match="not supported"):
        read_uri("ftp://x/y.csv", s3_settings)
    with pytest.raises(StorageError, match="needs an S3 endpoint"):
        read_uri("s3://b/k.csv", StorageSettings())
