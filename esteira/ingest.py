"""Ingest: read CSV or Parquet from a path, http(s) URL, s3:// URI or DVC-tracked file at a
git revision into one Parquet dataset.

The bytes are hashed as read, so every model can be traced to the exact data it saw. A
``dvc://<git repo url or path>?path=data/fleet.parquet&rev=v1.2`` source is read with
``dvc.api`` from the repository's DVC remote (a local directory, or MinIO/S3 with
credentials from the environment: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, the
endpoint from the remote's ``endpointurl``); its lineage is the resolved git commit, the DVC
md5 and the content hash (:func:`read_source`).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlparse

import pandas as pd

from esteira.config import Settings
from esteira.contract import Contract
from esteira.errors import DataError
from esteira.parquet import read_parquet
from esteira.storage import read_uri


@dataclass(frozen=True)
class Ingested:
    frame: pd.DataFrame
    content_hash: str
    source_uri: str
    file_format: str
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def metadata(self) -> dict:
        return {
            "source_uri": self.source_uri,
            "format": self.file_format,
            "rows": len(self.frame),
            "columns": len(self.frame.columns),
            "schema": {c: str(t) for c, t in self.frame.dtypes.items()},
            "content_hash": self.content_hash,
            "lineage": self.lineage,
        }


# ---- DVC ---------------------------------------------------------------------------------
DVC_SCHEME = "dvc://"
_DVC_FIX = "write dvc://<git repo url or path>?path=<file in the repo>&rev=<branch, tag or commit>"


@dataclass(frozen=True)
class DvcSource:
    repo: str
    path: str
    rev: str | None


def parse_dvc_uri(uri: str) -> DvcSource:
    """``dvc://<repo>?path=...&rev=...`` -> its parts; a local repo path is made absolute."""
    rest = uri[len(DVC_SCHEME) :]
    repo, _, query = rest.partition("?")
    params = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - {"path", "rev"})
    if not repo or unknown or not params.get("path", [""])[0]:
        problem = (
            f"unknown parameter(s) {unknown}"
            if unknown
            else ("names no repository" if not repo else "has no path=")
        )
        raise DataError("data.source_uri", f"{uri!r} {problem}", _DVC_FIX)
    if "://" not in repo and not repo.startswith("git@") and Path(repo).expanduser().exists():
        repo = str(Path(repo).expanduser().resolve())
    rev = params.get("rev", [""])[0] or None
    return DvcSource(repo, params["path"][0], rev)


def read_dvc(uri: str) -> tuple[bytes, dict[str, Any]]:
    """The bytes of a DVC-tracked (or plain git) file at a revision, and their lineage:
    the repository, the requested and the resolved git revision, the DVC md5. A bad
    revision, a missing path or an unreachable remote is one line naming the fix."""
    source = parse_dvc_uri(uri)
    from dvc.api import DVCFileSystem
    from dvc.scm import RevError

    at = f"{source.repo} at rev {source.rev or 'HEAD'}"
    try:
        # never the working tree of a local clone: without rev=, the commit HEAD points at
        fs = DVCFileSystem(source.repo, rev=source.rev or "HEAD")
        git_rev = fs.repo.get_rev()
        exists = fs.isfile(source.path)
    except RevError:
        raise DataError(
            "data.source_uri",
            f"rev {source.rev!r} is not a branch, tag or commit of {source.repo}",
            "set rev= to one of its revisions (`git tag`, `git branch -a`, `git log`)",
        ) from None
    except Exception as exc:  # noqa: BLE001 (git and DVC backends raise many types)
        raise DataError(
            "data.source_uri",
            f"cannot open {source.repo} as a git repository with DVC "
            f"({type(exc).__name__}: {_first_line(exc)})",
            "point dvc:// at a reachable git repository (a path or a clone URL) where `dvc init` was run",
        ) from None
    if not exists:
        raise DataError(
            "data.source_uri",
            f"no file {source.path!r} in {at}",
            f"set path= to a DVC-tracked file (`dvc list {source.repo} --rev {source.rev or 'HEAD'} -R`)",
        )
    md5 = fs.info(source.path).get("md5")
    try:
        with fs.open(source.path, "rb") as handle:
            data = handle.read()
    except Exception as exc:  # noqa: BLE001 (every remote's client has its own errors)
        raise DataError(
            "data.source_uri",
            f"cannot fetch {source.path!r} (md5 {md5}) of {at} from its DVC remote "
            f"({type(exc).__name__}: {_first_line(exc)})",
            "check that the remote is reachable and holds it (`dvc push` after `dvc add`); "
            "S3 credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        ) from None
    lineage = {
        "kind": "dvc",
        "repo": source.repo,
        "path": source.path,
        "rev": source.rev or "HEAD",
        "git_rev": git_rev,
        "dvc_md5": md5,
    }
    return data, lineage


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def read_source(uri: str, settings: Settings) -> tuple[bytes, dict[str, Any]]:
    """The bytes ``uri`` holds now and where they came from (a DVC source's revision and md5)."""
    if uri.startswith(DVC_SCHEME):
        data, lineage = read_dvc(uri)
    else:
        data, lineage = read_uri(uri, settings.storage), {"kind": urlparse(uri).scheme or "path"}
    return data, {**lineage, "content_hash": content_hash(data)}


def detect_format(uri: str) -> str:
    target = parse_dvc_uri(uri).path if uri.startswith(DVC_SCHEME) else urlparse(uri).path
    suffix = PurePosixPath(target).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt"):
        return "csv"
    raise DataError(
        "data.source_uri",
        f"cannot tell the format of {uri!r} from its extension",
        "use .csv or .parquet",
    )


def parse_bytes(data: bytes, file_format: str, contract: Contract, source: str) -> pd.DataFrame:
    """Bytes -> DataFrame, with a clear error for the ways a file can be broken."""
    if not data.strip():
        raise DataError(
            "data.source_uri", f"{source} is empty (0 rows)", "point at a file with data"
        )
    if file_format == "parquet":
        try:
            return read_parquet(data)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DataError(
                "data.source_uri",
                f"{source} is not a readable Parquet file ({exc})",
                "re-export the file",
            ) from None
    return _parse_csv(data, contract, source)


def _parse_csv(data: bytes, contract: Contract, source: str) -> pd.DataFrame:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            "data.source_uri",
            f"{source} is not UTF-8 (byte {exc.start} is invalid)",
            "save the file as UTF-8",
        ) from None
    header = text.split("\n", 1)[0].rstrip("\r").split(",")
    if len(header) == 1 and len(contract.columns) > 1:
        raise DataError(
            "data.source_uri",
            f"{source} has a single column {header[0][:60]!r}: the delimiter is not ','",
            "write the CSV with ',' as delimiter",
        )
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise DataError(
            "data.source_uri",
            f"{source} repeats header column(s) {duplicates}",
            "give each column one name",
        )
    try:
        frame = pd.read_csv(io.StringIO(text), low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(
            "data.source_uri", f"{source} is not valid CSV ({exc})", "fix the file"
        ) from None
    ts = contract.timestamp
    if ts in frame.columns:
        parsed = pd.to_datetime(frame[ts], utc=True, errors="coerce", format="ISO8601")
        bad = int(parsed.isna().sum() - frame[ts].isna().sum())
        if bad:
            raise DataError(
                ts,
                f"{bad} value(s) are not ISO-8601 timestamps (e.g. {frame[ts][parsed.isna()].iloc[0]!r})",
                "write timestamps like 2025-01-01T00:00:00Z",
            )
        frame[ts] = parsed
    return frame


def content_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fingerprint(uri: str, settings: Settings) -> str:
    """The content hash of what ``uri`` holds now (what :func:`ingest` records)."""
    detect_format(uri)
    return read_source(uri, settings)[1]["content_hash"]


def ingest(uri: str, settings: Settings, contract: Contract, expected_hash: str = "") -> Ingested:
    """``uri`` into a frame; with ``expected_hash``, the bytes read must be those fingerprinted."""
    file_format = detect_format(uri)
    data, lineage = read_source(uri, settings)
    if expected_hash and content_hash(data) != expected_hash:
        raise DataError(
            "data.source_uri",
            f"{uri} changed while the run read it ({expected_hash[:19]} fingerprinted, "
            f"{content_hash(data)[:19]} read)",
            "run again once the file is no longer being written",
        )
    frame = parse_bytes(data, file_format, contract, uri)
    ts = contract.timestamp
    if (
        ts in frame.columns
        and pd.api.types.is_datetime64_any_dtype(frame[ts])
        and frame[ts].dt.tz is None
    ):
        frame[ts] = frame[ts].dt.tz_localize("UTC")
    return Ingested(frame, content_hash(data), uri, file_format, lineage)
