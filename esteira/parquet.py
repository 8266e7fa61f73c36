"""Parquet into pandas without giving Arrow's threads a Python object to read from.

``pd.read_parquet(path)`` (pandas 2.x) opens a *Python* file object for a local file and
hands it to pyarrow, and ``pd.read_parquet(io.BytesIO(...))`` does the same with a BytesIO.
pyarrow reads such a source through Python (``PythonFile``) from its IO thread pool, and
every block it reads is an ``arrow::py::PyBuffer`` that owns a Python ``bytes`` object.
Read-ahead (``pre_buffer``) tasks can still be finishing when the process exits. The task
that drops the last such buffer calls ``PyGILState_Ensure`` while the interpreter is
finalizing; CPython ends that thread with ``pthread_exit``, the forced unwind reaches a
``noexcept`` frame of the ``std::thread``, and ``std::terminate`` aborts the process:
``terminate called without an active exception`` after the step has done its work
(issue 16; core dump: ``~PyBuffer`` -> ``PyGILState_Ensure`` -> ``take_gil`` ->
``PyThread_exit_thread`` on an ``arrow::internal::ThreadPool`` worker running
``RandomAccessFile::ReadAsync``, while the main thread is in ``Py_FinalizeEx``).

Here a local file is read by path through Arrow's own file system, and bytes (or an s3://
object, fetched first) from an Arrow-owned copy, so no Python object reaches Arrow's threads
and nothing of a read outlives it in them. Use this for every Parquet read of a component,
a server or a command; writes (``to_parquet``) run on the calling thread and are unaffected.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pandas as pd


def _arrow_owned(data: bytes | bytearray | memoryview) -> Any:
    """A reader over a copy of ``data`` in Arrow's memory (no reference to a Python object)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    sink.write(data)
    return pa.BufferReader(sink.getvalue())


def read_parquet(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    columns: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """``pd.read_parquet`` of a local path (file or directory), an ``s3://`` URI or bytes.

    Same DataFrame as ``pd.read_parquet``; only the way the bytes reach Arrow differs.
    """
    cols = list(columns) if columns is not None else None
    if isinstance(source, bytes | bytearray | memoryview):
        return pd.read_parquet(_arrow_owned(source), columns=cols)
    path = os.fspath(source)
    if "://" in path:
        import fsspec

        with fsspec.open(path, "rb", **(storage_options or {})) as fh:
            data = fh.read()
        return pd.read_parquet(_arrow_owned(data), columns=cols)
    from pyarrow import fs

    return pd.read_parquet(os.path.abspath(path), columns=cols, filesystem=fs.LocalFileSystem())
