"""The model registry on a local directory and on an S3 server: versions, aliases, crashes."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from esteira.config import StorageSettings
from esteira.errors import EsteiraError
from esteira.registry import AliasMove, ModelVersion, Registry, model_names
from esteira.storage import LocalStorage, S3Storage, open_storage

ROOT = Path(__file__).resolve().parent.parent
NAME = "machine-failure"


def files(tag: str = "a") -> dict[str, bytes]:
    return {"model.joblib": f"model-{tag}".encode(), "reference.json": b'{"psi": {}}'}


def meta(**extra: object) -> dict:
    return {"metrics": {"roc_auc": 0.9}, "data_hash": "sha256:abc", **extra}


def isolated_s3(request: pytest.FixtureRequest) -> StorageSettings:
    """``s3_settings`` with a prefix of its own: moto keeps its buckets across servers."""
    settings = request.getfixturevalue("s3_settings")
    return settings.model_copy(update={"prefix": f"t-{uuid.uuid4().hex[:10]}"})


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> LocalStorage | S3Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    return open_storage(isolated_s3(request))


@pytest.fixture
def registry(storage: LocalStorage | S3Storage) -> Registry:
    return Registry(storage, NAME)


# ---- register / get / list ------------------------------------------------------------------
def test_register_get_and_list(registry: Registry, storage: LocalStorage | S3Storage) -> None:
    first = registry.register(files("a"), meta(pipeline_run_id="run-1"))
    second = registry.register(files("b"), meta(pipeline_run_id="run-2"))

    assert (first.version, second.version) == (1, 2)
    assert first.metadata["version"] == 1 and first.metadata["created_at"]
    assert first.metadata["pipeline_run_id"] == "run-1"
    assert [v.version for v in registry.versions()] == [1, 2]
    got = registry.get("v2")
    assert isinstance(got, ModelVersion)
    assert got.metadata["pipeline_run_id"] == "run-2"
    assert registry.get(2) == registry.get("2") == got
    assert registry.read_file(1, "model.joblib") == b"model-a"
    assert sorted(registry.files(1)) == ["metadata.json", "model.joblib", "reference.json"]
    assert model_names(storage) == [NAME]


def test_register_does_not_mutate_caller_metadata(registry: Registry) -> None:
    metadata = meta()
    registry.register(files(), metadata)
    assert "version" not in metadata and "created_at" not in metadata


def test_version_uri_is_what_kserve_reads(
    registry: Registry, storage: LocalStorage | S3Storage
) -> None:
    version = registry.register(files(), meta())
    if isinstance(storage, S3Storage):
        assert version.uri == f"s3://{storage.bucket}/{storage.prefix}/models/{NAME}/v1"
    else:
        assert version.uri == str(storage.path(f"models/{NAME}/v1"))
        assert (Path(version.uri) / "model.joblib").read_bytes() == b"model-a"
    assert registry.version_uri("v1") == version.uri


def test_download_writes_all_files(registry: Registry, tmp_path: Path) -> None:
    registry.register(files("x"), meta())
    dest = registry.download(1, tmp_path / "out")
    assert sorted(p.name for p in dest.iterdir()) == [
        "metadata.json",
        "model.joblib",
        "reference.json",
    ]
    assert (dest / "model.joblib").read_bytes() == b"model-x"
    assert json.loads((dest / "metadata.json").read_text())["version"] == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"reference.json": b"{}"},  # no model
        {"model.joblib": b"m", "other.pkl": b"p"},  # two pickles: KServe loads exactly one
        {"model.pkl": b"m"},  # wrong name
        {"model.joblib": b"m", "metadata.json": b"{}"},  # reserved
        {"model.joblib": b"m", "../escape": b"x"},  # not a plain name
    ],
)
def test_register_rejects_bad_file_sets(registry: Registry, bad: dict[str, bytes]) -> None:
    with pytest.raises(EsteiraError):
        registry.register(bad, meta())
    assert registry.versions() == []


def test_metadata_must_be_strict_json(registry: Registry) -> None:
    with pytest.raises(EsteiraError, match="metadata"):
        registry.register(files(), meta(metrics={"roc_auc": float("nan")}))


# ---- immutability ---------------------------------------------------------------------------
def test_registering_never_overwrites(
    registry: Registry, storage: LocalStorage | S3Storage
) -> None:
    registry.register(files("first"), meta())
    before = registry.get(1)
    registry.register(files("second"), meta())
    assert registry.read_file(1, "model.joblib") == b"model-first"
    assert registry.get(1).metadata == before.metadata
    # a write into a committed version is refused, not applied
    with pytest.raises(EsteiraError, match="immutable"):
        registry._put_new(f"models/{NAME}/v1/model.joblib", b"tampered")
    assert registry.read_file(1, "model.joblib") == b"model-first"


# ---- concurrency ----------------------------------------------------------------------------
def _register_many(
    registry: Registry, count: int, tag: str, barrier: threading.Barrier
) -> list[int]:
    barrier.wait()
    return [registry.register(files(f"{tag}-{i}"), meta(tag=tag)).version for i in range(count)]


def test_concurrent_threads_get_distinct_versions(registry: Registry) -> None:
    workers, each = 6, 3
    barrier = threading.Barrier(workers)
    results: list[list[int]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = _register_many(registry, each, f"t{i}", barrier)
        except BaseException as exc:  # noqa: BLE001 - reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert not errors, errors
    got = sorted(v for r in results for v in r)
    assert got == list(range(1, workers * each + 1))  # distinct, none lost, no gaps
    assert [v.version for v in registry.versions()] == got
    for version in registry.versions():  # each version holds its own registration's files
        tag = version.metadata["tag"]
        assert registry.read_file(version.version, "model.joblib").startswith(
            f"model-{tag}".encode()
        )


def _process_worker(
    root: str, tag: str, count: int, start: multiprocessing.synchronize.Event, out
) -> None:
    registry = Registry(LocalStorage(root), NAME)
    start.wait(30)
    out.put([registry.register(files(f"{tag}-{i}"), meta(tag=tag)).version for i in range(count)])


def test_concurrent_processes_get_distinct_versions(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    workers, each = 4, 3
    root = str(tmp_path / "store")
    procs = [
        ctx.Process(target=_process_worker, args=(root, f"p{i}", each, start, out))
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    start.set()
    got = sorted(v for _ in procs for v in out.get(timeout=120))
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert got == list(range(1, workers * each + 1))
    assert [v.version for v in Registry(LocalStorage(root), NAME).versions()] == got


# ---- crashes --------------------------------------------------------------------------------
def test_failed_commit_leaves_nothing_visible(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.register(files("ok"), meta())

    def boom(self: Registry, version: int) -> None:
        raise RuntimeError("killed before the commit marker")

    with monkeypatch.context() as m:
        m.setattr(Registry, "_commit", boom)
        with pytest.raises(RuntimeError):
            registry.register(files("half"), meta())

    assert [v.version for v in registry.versions()] == [1]
    with pytest.raises(EsteiraError, match="ref 2: no such version"):
        registry.get(2)
    # the number is burned: the next registration gets 3, and v2's leftovers stay invisible
    assert registry.register(files("next"), meta()).version == 3
    assert [v.version for v in registry.versions()] == [1, 3]


_KILLED_HALFWAY = """
import os, sys
from esteira.config import StorageSettings
from esteira.registry import Registry
from esteira.storage import open_storage

def die(self, version):
    os._exit(1)  # as if the pod were killed after uploading, before the marker

Registry._commit = die
registry = Registry(open_storage(StorageSettings.model_validate_json(sys.argv[1])), "machine-failure")
registry.register({"model.joblib": b"half"}, {"metrics": {}})
"""


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_process_killed_halfway(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind == "s3":
        settings = isolated_s3(request)
    else:
        settings = StorageSettings(root=str(tmp_path / "store"))
    storage = open_storage(settings)
    registry = Registry(storage, NAME)
    registry.register(files("ok"), meta())

    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_HALFWAY, settings.model_dump_json()],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr.decode()
    assert storage.exists(f"models/{NAME}/v2/model.joblib")  # it did upload...
    assert [v.version for v in registry.versions()] == [1]  # ...but nothing is visible
    assert registry.register(files("after"), meta()).version == 3


def test_next_number_starts_after_highest_claim(
    registry: Registry, storage: LocalStorage | S3Storage
) -> None:
    storage.put_bytes(f"models/{NAME}/claims/v7", b"{}")  # burned by an earlier crash
    assert registry.register(files(), meta()).version == 8


# ---- aliases --------------------------------------------------------------------------------
def test_alias_moves_history_and_rollback(registry: Registry) -> None:
    for tag in "abc":
        registry.register(files(tag), meta())

    registry.set_alias("production", 1, "first")
    registry.set_alias("staging", 3, "try it")
    registry.set_alias("production", 2, "better")
    move = registry.set_alias("production", "v3", "best")
    assert isinstance(move, AliasMove)
    assert (move.previous, move.version, move.reason) == (2, 3, "best")
    assert registry.aliases() == {"production": 3, "staging": 3}
    assert registry.get("production").version == 3
    assert registry.get(3).aliases == ["production", "staging"]

    history = registry.history("production")
    assert [(m.previous, m.version) for m in history] == [(None, 1), (1, 2), (2, 3)]
    assert all(m.actor and m.time for m in history)
    assert len(registry.history()) == 4

    back = registry.rollback("production", "v3 misbehaves")
    assert (back.previous, back.version, back.kind) == (3, 2, "rollback")
    assert registry.aliases()["production"] == 2
    assert registry.rollback("production").version == 1  # rollbacks pop, they do not toggle
    with pytest.raises(EsteiraError, match="no previous version"):
        registry.rollback("production")
    assert registry.aliases() == {"production": 1, "staging": 3}


def test_rollback_skips_repeated_version(registry: Registry) -> None:
    for tag in "ab":
        registry.register(files(tag), meta())
    registry.set_alias("production", 1)
    registry.set_alias("production", 2)
    registry.set_alias("production", 2, "re-promoted the same version")
    assert registry.rollback_target("production") == 1
    assert registry.rollback("production").version == 1


def test_rollback_with_stale_expectation_refuses(registry: Registry) -> None:
    for tag in "abc":
        registry.register(files(tag), meta())
    registry.set_alias("production", 1)
    registry.set_alias("production", 2)
    target = registry.rollback_target()
    registry.set_alias("production", 3, "someone else moved it meanwhile")
    with pytest.raises(EsteiraError, match="changed while rolling back"):
        registry.rollback(expect=target)
    assert registry.aliases()["production"] == 3


def test_concurrent_alias_moves_are_all_kept(registry: Registry) -> None:
    for tag in "abcd":
        registry.register(files(tag), meta())
    workers = 6
    barrier = threading.Barrier(workers)

    def move(i: int) -> None:
        barrier.wait()
        registry.set_alias("production", 1 + i % 4, f"worker {i}")

    threads = [threading.Thread(target=move, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    history = registry.history("production")
    assert sorted(m.reason for m in history) == sorted(f"worker {i}" for i in range(workers))
    assert [m.seq for m in history] == list(range(1, workers + 1))
    for earlier, later in zip(history, history[1:], strict=False):
        assert later.previous == earlier.version  # every move saw the one before it
    assert registry.aliases()["production"] == history[-1].version


# ---- errors ---------------------------------------------------------------------------------
def test_missing_refs_name_model_ref_and_what_exists(registry: Registry) -> None:
    registry.register(files(), meta())
    registry.set_alias("production", 1)
    for ref in ("v9", 9, "staging", "latest!"):
        with pytest.raises(EsteiraError) as err:
            registry.get(ref)
        text = err.value.message
        assert NAME in text and str(ref) in text
        assert "v1" in text and "production->v1" in text


def test_alias_errors(registry: Registry) -> None:
    registry.register(files(), meta())
    with pytest.raises(EsteiraError, match="not a valid alias"):
        registry.set_alias("Prod-1", 1)
    with pytest.raises(EsteiraError, match="'v5'"):
        registry.set_alias("production", "v5")
    with pytest.raises(EsteiraError, match="no previous version"):
        registry.rollback("production")
    with pytest.raises(EsteiraError, match="not in this version"):
        registry.read_file(1, "nope.json")


def test_empty_registry(registry: Registry, storage: LocalStorage | S3Storage) -> None:
    assert registry.versions() == []
    assert registry.aliases() == {}
    assert registry.history() == []
    assert model_names(storage) == []
    with pytest.raises(EsteiraError, match="versions: none"):
        registry.get(1)
