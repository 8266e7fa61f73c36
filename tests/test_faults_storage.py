"""Faults on the S3 endpoint: down at start, stopped in the middle of a registration."""

import time

import pytest

from esteira.errors import StorageError
from esteira.registry import Registry
from esteira.storage import S3Storage

FILES = {"model.joblib": b"model-bytes", "reference.json": b"{}"}


def test_endpoint_down_at_start_retries_with_backoff_then_fails_clearly(s3_server, s3_settings):
    s3_server.stop()
    store = S3Storage(s3_settings.model_copy(update={"retries": 2}))
    started = time.monotonic()
    with pytest.raises(StorageError) as err:
        Registry(store, "machine-failure").register(FILES, {"metrics": {}})
    elapsed = time.monotonic() - started
    assert "after 3 attempts" in err.value.message and "storage.endpoint" in err.value.message
    assert elapsed >= 0.2 + 0.4  # backed off between the attempts


class StopsAfterModelUpload(S3Storage):
    """A real fault: the S3 server goes down right after the model file is uploaded."""

    def __init__(self, settings, server):
        super().__init__(settings)
        self.server = server

    def put_if_absent(self, key: str, data: bytes) -> bool:
        created = super().put_if_absent(key, data)
        if key.endswith("/model.joblib"):
            self.server.stop()
        return created


def test_endpoint_stopped_mid_registration_leaves_no_partial_version_and_loses_nothing(
    s3_server, s3_settings
):
    registry = Registry(S3Storage(s3_settings), "machine-failure")
    v1 = registry.register(FILES, {"metrics": {"roc_auc": 0.9}})
    registry.set_alias("production", v1.version, "first")

    faulty = Registry(StopsAfterModelUpload(s3_settings, s3_server), "machine-failure")
    with pytest.raises(StorageError, match="attempts"):
        faulty.register(FILES, {"metrics": {"roc_auc": 0.95}})

    s3_server.start()
    assert [v.version for v in registry.versions()] == [1]  # v2 was never committed: invisible
    assert registry.read_file(1, "model.joblib") == b"model-bytes"
    assert registry.aliases() == {"production": 1}
    assert registry.register(FILES, {"metrics": {}}).version == 3  # the burned number is not reused


# ---- lost answers: the server acted, the client never heard -----------------------------
REGISTRATION_PUTS = [
    "/claims/v1",
    "/model.joblib",
    "/reference.json",
    "/metadata.json",
    "/_COMPLETE",
]


@pytest.fixture
def proxy(s3_server):
    from tests.fault_proxy import FaultProxy

    with FaultProxy(s3_server.port) as running:
        yield running


def _through(proxy, s3_settings, **update) -> Registry:
    """The registry as a client behind the faulty network sees it (short timeouts)."""
    settings = s3_settings.model_copy(
        update={"endpoint": proxy.endpoint, "retries": 2, "timeout_seconds": 1.0, **update}
    )
    return Registry(S3Storage(settings), "machine-failure")


@pytest.mark.parametrize(
    ("suffix", "mode", "times"),
    [
        *((s, "cut", 1) for s in REGISTRATION_PUTS),
        ("/_COMPLETE", "hang", 1),  # the read times out instead
        ("/_COMPLETE", "cut", 3),  # every attempt's answer lost: the marker is read back
    ],
    ids=[
        *(s.strip("/").split("/")[0] for s in REGISTRATION_PUTS),
        "_COMPLETE-timeout",
        "_COMPLETE-all",
    ],
)
def test_a_lost_answer_to_any_registration_put_still_registers_one_version(
    proxy, s3_settings, suffix, mode, times
):
    direct = Registry(S3Storage(s3_settings), "machine-failure")
    faulty = _through(proxy, s3_settings)
    proxy.drop("PUT", suffix, mode=mode, times=times)

    version = faulty.register(FILES, {"metrics": {"roc_auc": 0.9}})

    assert [p for _, p in proxy.dropped] and all(p.endswith(suffix) for _, p in proxy.dropped)
    assert len(proxy.dropped) == times  # the fault really happened
    assert version.version == 1
    assert [v.version for v in direct.versions()] == [1]  # committed, and reported so
    keys = direct.storage.list("models/machine-failure")
    assert [k for k in keys if "/claims/" in k] == ["models/machine-failure/claims/v1"]  # no orphan
    assert direct.read_file(1, "model.joblib") == FILES["model.joblib"]
    assert direct.get(1).metadata["metrics"] == {"roc_auc": 0.9}
    faulty.set_alias("production", version.version, "gate passed")  # the pipeline promotes
    assert direct.aliases() == {"production": 1}
    assert faulty.register(FILES, {"metrics": {}}).version == 2  # and the next one is v2


def test_a_lost_answer_to_an_alias_move_appends_it_once(proxy, s3_settings):
    direct = Registry(S3Storage(s3_settings), "machine-failure")
    for _ in range(2):
        direct.register(FILES, {"metrics": {}})
    faulty = _through(proxy, s3_settings)

    proxy.drop("PUT", "/aliases/00000001.json")
    faulty.set_alias("production", 1)
    proxy.drop("PUT", "/aliases/00000002.json")
    faulty.set_alias("production", 2)
    proxy.drop("PUT", "/aliases/00000003.json")
    move = faulty.rollback("production", "bad canary")

    assert len(proxy.dropped) == 3
    assert [(m.seq, m.kind, m.version) for m in direct.history()] == [
        (1, "move", 1),
        (2, "move", 2),
        (3, "rollback", 1),
    ]  # each move once: a duplicated rollback would pop twice
    assert move.seq == 3 and direct.aliases() == {"production": 1}


class StopsBeforeCommit(S3Storage):
    """The S3 server goes down just before the commit marker is written."""

    def __init__(self, settings, server):
        super().__init__(settings)
        self.server = server

    def put_if_absent(self, key: str, data: bytes) -> bool:
        if key.endswith("/_COMPLETE"):
            self.server.stop()
        return super().put_if_absent(key, data)


def test_a_commit_that_cannot_be_confirmed_says_so_and_how_to_check(s3_server, s3_settings):
    store = StopsBeforeCommit(s3_settings.model_copy(update={"retries": 1}), s3_server)
    with pytest.raises(StorageError) as err:
        Registry(store, "machine-failure").register(FILES, {"metrics": {}})
    assert "the commit of v1 is unknown" in err.value.message
    assert "esteira models list machine-failure" in err.value.message
    s3_server.start()
    assert Registry(S3Storage(s3_settings), "machine-failure").versions() == []
