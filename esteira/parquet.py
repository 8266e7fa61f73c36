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


# ---- lean reads: a few rows or narrow dtypes, never the whole table at full width ---------
def _native(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    storage_options: dict[str, Any] | None = None,
) -> Any:
    """An Arrow-native file: a local path through Arrow's file system, or an Arrow-owned copy
    of bytes (given, or an s3:// object fetched first)."""
    if isinstance(source, bytes | bytearray | memoryview):
        return _arrow_owned(source)
    path = os.fspath(source)
    if "://" in path:
        import fsspec

        with fsspec.open(path, "rb", **(storage_options or {})) as fh:
            return _arrow_owned(fh.read())
    from pyarrow import fs

    return fs.LocalFileSystem().open_input_file(os.path.abspath(path))


def read_parquet_rows(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    columns: Sequence[str],
    rows: Any,
    storage_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """``read_parquet(source, columns).iloc[rows].reset_index(drop=True)``, the same frame, read
    one column at a time so that only ``rows`` of each column are ever held whole."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(_native(source, storage_options))
    schema = parquet.schema_arrow
    take = pa.array(np.asarray(rows, dtype=np.int64))
    arrays = [parquet.read(columns=[c]).column(0).take(take) for c in columns]
    fields = [schema.field(c) for c in columns]
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=schema.metadata))
    return table.to_pandas()


def read_parquet_narrow(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    columns: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``read_parquet`` with every string column as a pandas Categorical (a code per row, not
    a Python string per row), and the dtypes ``read_parquet`` would have given, by column:
    ``frame[col].astype(dtypes[col])`` is then exactly ``read_parquet``'s column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    native = _native(source, storage_options)
    schema = pq.ParquetFile(native).schema_arrow
    names = list(columns) if columns is not None else list(schema.names)
    strings = [
        c
        for c in names
        if pa.types.is_string(schema.field(c).type)
        or pa.types.is_large_string(schema.field(c).type)
    ]
    wide = schema.empty_table().select(names).to_pandas().dtypes.to_dict()
    parquet = pq.ParquetFile(native, read_dictionary=strings or None)
    frame = parquet.read(columns=names, use_pandas_metadata=True).to_pandas()
    return frame, wide


def read_parquet_between(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    columns: Sequence[str],
    column: str,
    low: Any = None,
    high: Any = None,
    storage_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """``read_parquet(source, columns)`` rows whose timestamp ``column`` is within
    ``[low, high]`` (either may be None: unbounded), in file order, scanned batch by batch:
    only the rows kept are ever held whole. A tz-naive column counts as UTC."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(_native(source, storage_options))
    schema = parquet.schema_arrow
    kind = schema.field(column).type
    names = list(dict.fromkeys([*columns, column]))

    def bound(moment: Any) -> Any:
        stamp = pd.Timestamp(moment)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return pa.scalar(stamp if kind.tz else stamp.tz_localize(None), type=kind)

    parts = []
    for batch in parquet.iter_batches(batch_size=256 * 1024, columns=names):
        keep = None
        for moment, compare in ((low, pc.greater_equal), (high, pc.less_equal)):
            if moment is not None:
                test = compare(batch.column(column), bound(moment))
                keep = test if keep is None else pc.and_(keep, test)
        parts.append(batch if keep is None else batch.filter(keep))
    fields = [schema.field(c) for c in columns]
    table = pa.Table.from_batches(
        [p.select(list(columns)) for p in parts], schema=pa.schema(fields)
    ).replace_schema_metadata(schema.metadata)
    return table.to_pandas()


def release_unused_memory() -> None:
    """Give the memory Arrow's pool keeps after a read back to the system.

    A read converts an Arrow table to pandas, and the pool (mimalloc) keeps the table's freed
    buffers for reuse: right after ``read_parquet`` of a 565 MB training set the process holds
    about 820 MB more than the frame needs. A step that goes on to other heavy work (the
    model's fits) calls this once its reads are done."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
