"""Storage, written once: a local directory or an S3 bucket (MinIO in a cluster).

Keys are '/'-separated paths relative to the storage root. Every write is
atomic (a reader sees the old object or the new one, never a part), and
``put_if_absent`` is the one primitive the registry builds its locking on:
``O_EXCL``-style link on disk, ``If-None-Match: *`` on S3.

``put_if_absent`` is idempotent on S3: when the answer to a PUT is lost (the
connection is cut, the read times out) the PUT may still have been stored, so the
retry can meet "already exists" (412) for its own write. A retry that meets 412
compares the digest of the object there with what it meant to write and reports
success when they are the same. Callers make their writes unique (the registry
writes a fresh token into claims, commit markers and alias moves), so equal bytes
mean "ours", never "someone else's".
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

from esteira.config import StorageSettings, resolve_path
from esteira.errors import StorageError

T = TypeVar("T")


class Storage(Protocol):
    def uri(self, key: str = "") -> str: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def put_if_absent(self, key: str, data: bytes) -> bool: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def delete(self, key: str) -> None: ...


def _clean(key: str) -> str:
    parts = [p for p in key.strip("/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise StorageError(
            "key", f"{key!r} may not contain '.' or '..'", "use a plain relative key"
        )
    return "/".join(parts)


class LocalStorage:
    """A directory tree. Writes go to a temp file in the same directory and are renamed."""

    def __init__(self, root: str | Path) -> None:
        self.root = resolve_path(root)

    def path(self, key: str) -> Path:
        return self.root / _clean(key)

    def uri(self, key: str = "") -> str:
        return str(self.path(key)) if key else str(self.root)

    def _temp(self, target: Path, data: bytes) -> str:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self.path(key)
        os.replace(self._temp(target, data), target)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        target = self.path(key)
        tmp = self._temp(target, data)
        try:
            os.link(tmp, target)  # fails if target exists: atomic create-exclusive with content
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise StorageError(key, f"no object at {self.uri(key)}") from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self.path(prefix) if prefix else self.root
        if not base.exists():
            return []
        keys = (
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not (p.name.startswith(".") and p.name.endswith(".tmp"))
        )
        return sorted(keys)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


def with_retries(fn: Callable[[], T], *, what: str, retries: int, base_delay: float = 0.2) -> T:
    """Call ``fn``; on connection trouble retry with exponential backoff, then fail clearly."""
    from urllib3.exceptions import HTTPError as Urllib3Error

    attempt = 0
    while True:
        try:
            return fn()
        except (Urllib3Error, ConnectionError, TimeoutError) as exc:
            if attempt >= retries:
                raise StorageError(
                    "storage.endpoint",
                    f"{what} failed after {attempt + 1} attempts ({type(exc).__name__})",
                    "check that the S3/MinIO endpoint is up and reachable",
                ) from None
            time.sleep(base_delay * (2**attempt))
            attempt += 1


class S3Storage:
    """A bucket (and optional prefix) on MinIO or any S3-compatible server."""

    def __init__(self, settings: StorageSettings) -> None:
        from minio import Minio
        from urllib3 import PoolManager, Retry, Timeout

        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = _clean(settings.prefix)
        read = settings.timeout_seconds
        http = PoolManager(
            timeout=Timeout(connect=min(2.0, read), read=read), retries=Retry(total=0)
        )
        self.client = Minio(
            settings.endpoint,
            access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
            secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )
        self._bucket_checked = False

    def _key(self, key: str) -> str:
        key = _clean(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return with_retries(fn, what=what, retries=self.settings.retries)

    def ensure_bucket(self) -> None:
        if self._bucket_checked:
            return
        if not self._call("bucket check", lambda: self.client.bucket_exists(self.bucket)):
            from minio.error import S3Error

            try:
                self._call("bucket create", lambda: self.client.make_bucket(self.bucket))
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        self._bucket_checked = True

    def uri(self, key: str = "") -> str:
        k = self._key(key) if key else self.prefix
        return f"s3://{self.bucket}/{k}".rstrip("/")

    def put_bytes(self, key: str, data: bytes) -> None:
        self.ensure_bucket()
        self._call(
            f"put {key}",
            lambda: self.client.put_object(
                self.bucket, self._key(key), io.BytesIO(data), len(data)
            ),
        )

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` with ``data`` unless it exists; True when this call's write is there."""
        from minio.error import S3Error

        self.ensure_bucket()
        attempts = 0

        def put() -> None:
            nonlocal attempts
            attempts += 1
            # minio-py has no public conditional PUT; its single-part PUT takes raw headers.
            # Both MinIO and S3 answer 412 when the key already exists.
            self.client._put_object(
                self.bucket, self._key(key), data, headers={"If-None-Match": "*"}
            )

        try:
            self._call(f"put {key}", put)
            return True
        except S3Error as exc:
            if exc.code not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            # An earlier attempt whose answer was lost may have stored this very write.
            return attempts > 1 and self._holds(key, data)

    def _holds(self, key: str, data: bytes) -> bool:
        """Whether the object at ``key`` has the digest of ``data``."""
        try:
            there = self.get_bytes(key)
        except StorageError:
            return False
        return hashlib.sha256(there).digest() == hashlib.sha256(data).digest()

    def get_bytes(self, key: str) -> bytes:
        from minio.error import S3Error

        def read() -> bytes:
            resp = self.client.get_object(self.bucket, self._key(key))
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        try:
            return self._call(f"get {key}", read)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise StorageError(key, f"no object at {self.uri(key)}") from None
            raise

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self._call(f"stat {key}", lambda: self.client.stat_object(self.bucket, self._key(key)))
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                return False
            raise

    def list(self, prefix: str = "") -> list[str]:
        self.ensure_bucket()
        full = self._key(prefix) + "/" if prefix else (self.prefix + "/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0

        def names() -> list[str]:
            objs = self.client.list_objects(self.bucket, prefix=full, recursive=True)
            return [o.object_name[strip:] for o in objs]

        return sorted(self._call(f"list {prefix}", names))

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", lambda: self.client.remove_object(self.bucket, self._key(key)))


def open_storage(settings: StorageSettings) -> LocalStorage | S3Storage:
    return S3Storage(settings) if settings.kind == "s3" else LocalStorage(settings.root)


def s3_storage_options(settings: StorageSettings) -> dict:
    """fsspec/s3fs options (pandas ``storage_options``) for the configured endpoint."""
    scheme = "https" if settings.secure else "http"
    return {
        "key": os.environ.get("AWS_ACCESS_KEY_ID"),
        "secret": os.environ.get("AWS_SECRET_ACCESS_KEY"),
        "client_kwargs": {
            "endpoint_url": f"{scheme}://{settings.endpoint}",
            "region_name": settings.region,
        },
    }


def read_uri(uri: str, settings: StorageSettings, *, max_bytes: int = 2 * 1024**3) -> bytes:
    """Bytes of a local path, an http(s) URL or an s3://bucket/key on the configured endpoint."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("http", "https"):
        import requests

        try:
            with requests.get(uri, timeout=(5, 60), stream=True) as resp:
                if resp.status_code != 200:
                    raise StorageError("data.source_uri", f"{uri} answered HTTP {resp.status_code}")
                return _bounded(resp.iter_content(1 << 20), max_bytes, uri)
        except requests.RequestException as exc:
            raise StorageError(
                "data.source_uri", f"cannot download {uri} ({type(exc).__name__})", "check the URL"
            ) from None
    if parsed.scheme == "s3":
        if not settings.endpoint:
            raise StorageError(
                "storage.endpoint",
                f"{uri} needs an S3 endpoint",
                "set storage.endpoint (host:port)",
            )
        bucket_settings = settings.model_copy(update={"bucket": parsed.netloc, "prefix": ""})
        return S3Storage(bucket_settings).get_bytes(parsed.path.lstrip("/"))
    if parsed.scheme not in ("", "file"):
        raise StorageError(
            "data.source_uri",
            f"scheme {parsed.scheme!r} is not supported",
            "use a path, http(s):// or s3://",
        )
    path = Path(parsed.path if parsed.scheme == "file" else uri)
    if not path.is_file():
        raise StorageError(
            "data.source_uri",
            f"no file at {path}",
            "check data.source_uri; `esteira data generate --out PATH` writes demo data",
        )
    return path.read_bytes()


def _bounded(chunks: Iterator[bytes], max_bytes: int, uri: str) -> bytes:
    buf = bytearray()
    for chunk in chunks:
        buf.extend(chunk)
        if len(buf) > max_bytes:
            raise StorageError("data.source_uri", f"{uri} is larger than {max_bytes} bytes")
    return bytes(buf)
