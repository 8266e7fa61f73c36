"""Steps end with exit status 0: no native thread aborts the process at interpreter exit (issue 16).

The promote step (and any step reading Parquet) sometimes died after its work with
``terminate called without an active exception``: pandas handed pyarrow a Python file
object, an Arrow IO thread was still finishing a read-ahead task at exit, freed the last
Python-backed buffer (``arrow::py::PyBuffer``), asked for the GIL while the interpreter
finalized, and CPython's ``pthread_exit`` of that thread ended in ``std::terminate``.
The shared reader (``esteira.parquet``) keeps Python objects out of Arrow's threads.

The regression test does what a step does with Parquet (read a hold-out-shaped file, then
exit at once: the widest window for the race) in RUNS fresh interpreters. The old read
aborted 1 process in 25 here (2 cores shared, 2026-11-29), 1 pipeline run in 7 in the
issue: all RUNS would pass the old code with probability (24/25)^80 = 3.8 %.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from esteira.config import ROOT
from esteira.parquet import read_parquet

RUNS = 80
PARALLEL = 2
CHILD = "import sys\nfrom esteira.parquet import read_parquet\nread_parquet(sys.argv[1])\n"


def holdout_like(path: Path, rows: int = 1200) -> Path:
    """A Parquet file shaped like the training hold-out: 44 columns, ~330 KB, one row group."""
    rng = np.random.default_rng(16)
    frame = pd.DataFrame(
        {
            "machine_id": rng.integers(1, 26, rows),
            "event_timestamp": pd.date_range("2025-01-01", periods=rows, freq="h", tz="UTC"),
            "fails_24h": rng.integers(0, 2, rows),
            **{f"f{i}": rng.normal(size=rows) for i in range(39)},
            "model": rng.choice(["model1", "model2", "model3", "model4"], rows),
            "age": rng.integers(0, 20, rows),
        }
    )
    frame.to_parquet(path, index=False)
    return path


def run_children(code: str, path: Path, runs: int) -> list[tuple[int, str]]:
    """(exit status, stderr tail) of ``runs`` fresh interpreters running ``code``, PARALLEL at a time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results: list[tuple[int, str]] = []
    pending = list(range(runs))
    while pending:
        batch, pending = pending[:PARALLEL], pending[PARALLEL:]
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(path)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in batch
        ]
        for proc in procs:
            try:
                _, err = proc.communicate(timeout=600)
            except subprocess.TimeoutExpired:  # a hang at exit is a failure too
                proc.kill()
                _, err = proc.communicate()
                err = "timed out after 600 s\n" + err
            results.append((proc.returncode, err[-300:]))
    return results


def test_reading_parquet_then_exiting_never_aborts(tmp_path):
    path = holdout_like(tmp_path / "holdout.parquet")
    results = run_children(CHILD, path, RUNS)
    failed = [(code, err) for code, err in results if code != 0]
    assert not failed, f"{len(failed)} of {RUNS} exits failed; first: {failed[0]}"


def test_the_shared_reader_gives_what_pandas_gives(tmp_path):
    path = holdout_like(tmp_path / "holdout.parquet", rows=50)
    expected = pd.read_parquet(path)
    pd.testing.assert_frame_equal(read_parquet(path), expected)
    pd.testing.assert_frame_equal(read_parquet(str(path)), expected)
    pd.testing.assert_frame_equal(read_parquet(path.read_bytes()), expected)
    pd.testing.assert_frame_equal(
        read_parquet(path, columns=["model", "age"]), expected[["model", "age"]]
    )
    # a relative path, as kfp.local's artifact paths can be
    os.chdir(tmp_path)
    try:
        pd.testing.assert_frame_equal(read_parquet("holdout.parquet"), expected)
    finally:
        os.chdir(ROOT)


def test_the_shared_reader_reads_a_directory_of_parts(tmp_path):
    path = holdout_like(tmp_path / "one.parquet", rows=20)
    parts = tmp_path / "parts"
    parts.mkdir()
    frame = pd.read_parquet(path)
    frame.iloc[:10].to_parquet(parts / "a.parquet", index=False)
    frame.iloc[10:].to_parquet(parts / "b.parquet", index=False)
    pd.testing.assert_frame_equal(read_parquet(parts), frame)


def test_corrupt_bytes_raise_like_pandas(tmp_path):
    with pytest.raises(Exception, match="Parquet"):
        read_parquet(b"not a parquet file at all")
