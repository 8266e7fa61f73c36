"""Ingest: read CSV or Parquet from a path, http(s) URL or s3:// URI into one Parquet dataset.

The bytes are hashed as read, so every model can be traced to the exact data it saw.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlparse

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

    @property
    def metadata(self) -> dict:
        return {
            "source_uri": self.source_uri,
            "format": self.file_format,
            "rows": len(self.frame),
            "columns": len(self.frame.columns),
            "schema": {c: str(t) for c, t in self.frame.dtypes.items()},
            "content_hash": self.content_hash,
        }


def detect_format(uri: str) -> str:
    suffix = PurePosixPath(urlparse(uri).path).suffix.lower()
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
    return content_hash(read_uri(uri, settings.storage))


def ingest(uri: str, settings: Settings, contract: Contract, expected_hash: str = "") -> Ingested:
    """``uri`` into a frame; with ``expected_hash``, the bytes read must be those fingerprinted."""
    file_format = detect_format(uri)
    data = read_uri(uri, settings.storage)
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
    return Ingested(frame, content_hash(data), uri, file_format)
