"""A KFP task's Spark step as a SparkApplication (``features.spark.run_in: spark_application``).

Up to the Kubernetes API call, with no cluster: a stand-in for kubernetes'
``CustomObjectsApi`` records each SparkApplication (validated against the Spark Operator's
CRD schema) and plays the operator: it runs esteira/spark_job.py's ``main`` with the
application's own arguments, in local mode (``local[1]``), against the loopback S3 server,
then reports COMPLETED or FAILED as the operator would. The task side is the component
logic (esteira/feature_engine.py): stage the input in S3, submit, wait, copy back.

The training-set step is not played here: inside the application Feast's Spark store reads
the sources at ``s3a://``, which needs the hadoop-aws jars (``features.spark.packages``) that
are not on this machine; its application body is checked instead.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("pyspark")

from esteira import spark_job  # noqa: E402
from esteira import spark_submit as ss  # noqa: E402
from esteira.config import ROOT, Settings  # noqa: E402
from esteira.contract import load_contract  # noqa: E402
from esteira.errors import EsteiraError  # noqa: E402
from esteira.feature_engine import compute_features_step, training_set_step  # noqa: E402
from esteira.features import compute_feature_tables, label_frame  # noqa: E402
from esteira.parquet import read_parquet  # noqa: E402
from esteira.storage import open_storage  # noqa: E402
from testkit.pipeline import generate_fleet  # noqa: E402
from testkit.services import S3Server  # noqa: E402

REPO = ROOT / "feature_repo" / "predictive_maintenance"
SCHEMA = ROOT.parent / "shared" / "schemas" / "spark-operator" / "sparkapplication_v1beta2.json"


def schema_errors(obj: dict[str, Any]) -> list[str]:
    import jsonschema

    if not SCHEMA.is_file():
        pytest.skip(f"{SCHEMA} not present")
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]


class Operator:
    """Stands where kubernetes' CustomObjectsApi is, with the Spark Operator behind it."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.states: dict[str, dict[str, str]] = {}

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):  # noqa: ANN001
        from kubernetes.client.rest import ApiException

        assert (group, version, plural) == (ss.GROUP, ss.VERSION, ss.PLURAL)
        assert namespace == body["metadata"]["namespace"]
        assert schema_errors(body) == []
        name = body["metadata"]["name"]
        if name in self.states:
            raise ApiException(status=409, reason="AlreadyExists")
        self.created.append(body)
        self.states[name] = self._run(body)
        return body

    def _run(self, body: dict[str, Any]) -> dict[str, str]:
        """The driver: spark-submit of mainApplicationFile with the arguments, here local[1]."""
        assert body["spec"]["mainApplicationFile"] == "local:///app/esteira/spark_job.py"
        step, config, *inputs = body["spec"]["arguments"]
        inside = json.loads(config)
        assert inside["features"]["spark"]["master"] == "cluster"
        inside["features"]["spark"]["master"] = "local[1]"  # what the operator's submit sets
        try:
            code = spark_job.main([step, json.dumps(inside), *inputs])
        except Exception:  # noqa: BLE001 - a traceback ends the driver's process with 1
            code = 1
        if code == 0:
            return {"state": "COMPLETED"}
        return {"state": "FAILED", "errorMessage": f"driver container failed with ExitCode: {code}"}

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):  # noqa: ANN001
        return {"metadata": {"name": name}, "status": {"applicationState": self.states[name]}}


@pytest.fixture(scope="module")
def s3():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing-key")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with S3Server() as server:
            yield server


@pytest.fixture(scope="module")
def session():
    from esteira.config import SparkSettings
    from esteira.spark_features import spark_session

    spark = spark_session(SparkSettings(master="local[1]", shuffle_partitions=1))
    yield spark
    spark.stop()


@pytest.fixture(scope="module")
def settings(s3, tmp_path_factory) -> Settings:
    repo = tmp_path_factory.mktemp("spark-app") / "feature_repo"
    repo.mkdir()
    for path in REPO.iterdir():
        if path.suffix in (".py", ".yaml"):
            shutil.copy(path, repo / path.name)
    return Settings(
        storage={
            "kind": "s3",
            "endpoint": s3.endpoint,
            "bucket": f"esteira-spark-{uuid.uuid4().hex[:8]}",
            "prefix": "team",
            "retries": 1,
        },
        features={
            "repo_path": str(repo),
            "engine": "spark",
            "offline_store": "s3",
            "spark": {
                "master": "local[1]",
                "shuffle_partitions": 1,
                "run_in": "spark_application",
                "poll_seconds": 0.01,
                "timeout_seconds": 60,
            },
        },
        image={"registry": "registry.example/esteira", "tag": "1.2.3"},
    )


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return generate_fleet(machines=2, days=5, seed=7)


@pytest.fixture(scope="module")
def dataset(raw, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("inputs") / "dataset.parquet"
    raw.to_parquet(path, index=False)
    return str(path)


RUN = "minio://mlpipeline/v2/artifacts/training/run-7f3a/compute-features/entities"


@pytest.fixture(scope="module")
def cluster_run(session, settings, dataset, tmp_path_factory):
    """compute-features with run_in: spark_application, once for the module."""
    contract = load_contract(settings.features.repo_path)
    operator = Operator()
    out = tmp_path_factory.mktemp("outputs") / "entities"
    published, rows = compute_features_step(
        dataset, contract, settings, str(out), RUN, api=operator
    )
    return operator, out, published, rows


def test_compute_features_runs_as_a_spark_application(
    cluster_run, settings, raw, dataset, tmp_path
) -> None:
    contract = load_contract(settings.features.repo_path)
    operator, out, published, rows = cluster_run

    # one application, filled from the settings, with the staged URIs and no secrets
    (app,) = operator.created
    spec = app["spec"]
    name = app["metadata"]["name"]
    assert name == ss.application_name("features", RUN)
    step, config, source, target = spec["arguments"]
    staged = f"s3://{settings.storage.bucket}/team/spark/{name}"
    assert (step, source, target) == (
        "features",
        f"{staged}/input.parquet",
        f"{staged}/output.parquet",
    )
    assert json.loads(config)["features"]["spark"]["run_in"] == "task"
    assert spec["image"] == "registry.example/esteira/esteira-spark:1.2.3"
    assert spec["deps"]["packages"] == ["org.apache.hadoop:hadoop-aws:3.4.1"]
    assert spec["sparkConf"]["spark.jars.ivy"] == "/tmp/.ivy2"
    assert spec["hadoopConf"]["fs.s3a.endpoint"] == f"http://{settings.storage.endpoint}"
    assert "testing-secret" not in json.dumps(app) and "testing-key" not in json.dumps(app)

    # the output artifact and the published tables equal what local mode gives
    expected_rows = label_frame(raw, contract, settings.features.sample_every_hours)
    pd.testing.assert_frame_equal(
        read_parquet(out), expected_rows.reset_index(drop=True), check_dtype=False
    )
    pd.testing.assert_frame_equal(rows, read_parquet(out))
    storage = open_storage(settings.storage)
    expected = compute_feature_tables(raw, contract)
    assert set(published) == set(expected)
    for table, frame in expected.items():
        assert published[table] == f"s3://{settings.storage.bucket}/team/features/{table}.parquet"
        got = read_parquet(storage.get_bytes(f"features/{table}.parquet"))
        # written through the driver (no executor disk): the same bits as the pandas engine
        pd.testing.assert_frame_equal(
            got, frame.reset_index(drop=True), check_dtype=False, check_exact=True
        )

    # a retried task (same run and task) re-attaches: no second application, same output
    again = tmp_path / "entities-retry"
    compute_features_step(dataset, contract, settings, str(again), RUN, api=operator)
    assert len(operator.created) == 1
    assert again.read_bytes() == out.read_bytes()


def test_materialization_stays_in_the_task_without_spark(cluster_run, settings, raw) -> None:
    """The SparkSources the application published, pulled by the as-of store into SQLite."""
    from esteira import feast_repo
    from esteira.feast_store import clear_cache, feature_store

    store = feature_store(settings, offline=True)
    assert store.config.offline_store.type == "esteira.feast_store.AsofFileOfflineStore"
    try:
        feast_repo.apply_definitions(settings)
        done = feast_repo.materialize(settings)
        assert done["window"]  # every view loaded from s3a:// sources, no Spark session
        contract = load_contract(settings.features.repo_path)
        table = compute_feature_tables(raw, contract)["telemetry_agg"]
        machine = int(table["machine_id"].iloc[0])
        latest = table.loc[table["machine_id"] == machine].iloc[-1]
        online = store.get_online_features(
            features=["telemetry_agg:volt_mean_3h"], entity_rows=[{"machine_id": machine}]
        ).to_dict()
        assert online["volt_mean_3h"] == [latest["volt_mean_3h"]]
    finally:
        clear_cache()


def test_a_failed_application_is_one_clear_error_and_no_output(session, settings, tmp_path) -> None:
    contract = load_contract(settings.features.repo_path)
    broken = tmp_path / "dataset.parquet"
    pd.DataFrame({"machine_id": [1], "volt": [1.0]}).to_parquet(broken)  # no timestamp
    out = tmp_path / "entities"
    with pytest.raises(EsteiraError, match=r"ended FAILED: driver container failed") as info:
        compute_features_step(str(broken), contract, settings, str(out), "run-broken", Operator())
    assert "kubectl logs" in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == [broken]  # no output artifact, not even a partial one


def test_the_training_set_application(settings, tmp_path) -> None:
    """Its body (the rows staged, hadoop-aws for s3a://, the Secret's env), up to the call."""
    recorded: list[dict[str, Any]] = []

    class Refusing:
        def create_namespaced_custom_object(self, group, version, namespace, plural, body):  # noqa: ANN001
            from kubernetes.client.rest import ApiException

            assert schema_errors(body) == []
            recorded.append(body)
            raise ApiException(status=403, reason="Forbidden")

    rows = pd.DataFrame(
        {"machine_id": [1], "event_timestamp": [pd.Timestamp("2025-01-02", tz="UTC")]}
    )
    out = tmp_path / "training_set"
    with pytest.raises(EsteiraError, match="HTTP 403"):
        training_set_step(rows, settings, str(out), "run-ts", api=Refusing())
    (app,) = recorded
    step, _, source, _ = app["spec"]["arguments"]
    assert step == "training-set"
    staged = read_parquet(
        open_storage(settings.storage).get_bytes(
            source.removeprefix(f"s3://{settings.storage.bucket}/team/")
        )
    )
    pd.testing.assert_frame_equal(staged, rows, check_dtype=False)
    for role in ("driver", "executor"):
        assert {"secretRef": {"name": "esteira-s3"}} in app["spec"][role]["envFrom"]
    assert not out.exists()


@pytest.mark.parametrize(
    ("change", "needs"),
    [
        ({"storage": {"kind": "local"}}, "storage.kind 's3'"),
        ({"offline": "local"}, "offline_store 's3'"),
    ],
)
def test_refused_without_shared_storage(settings, change, needs, tmp_path) -> None:
    s = settings.model_copy(deep=True)
    if "storage" in change:
        s.storage.kind = "local"
    else:
        s.features.offline_store = "local"
    with pytest.raises(EsteiraError, match=f"features.spark.run_in: .*{needs}.*Fix: set"):
        ss.run_step(s, "features", str(tmp_path / "in"), str(tmp_path / "out"), "r", api=object())


def test_packages_can_be_emptied_for_images_with_the_jars(settings) -> None:
    s = settings.model_copy(deep=True)
    s.features.spark.packages = []
    app = ss.spark_application(s, "features", [], "r")
    assert "packages" not in app["spec"].get("deps", {})
    assert schema_errors(app) == []


@pytest.mark.cluster
@pytest.mark.skipif(
    os.environ.get("ESTEIRA_TEST_CLUSTER") != "1", reason="set ESTEIRA_TEST_CLUSTER=1"
)
def test_compute_features_on_a_real_cluster(tmp_path) -> None:
    """Needs the Spark Operator, manifests/base applied, the Spark image pushed, and the
    configuration (ESTEIRA_* env) naming the cluster's S3 storage and offline store."""
    s = Settings()
    s.features.engine, s.features.spark.run_in = "spark", "spark_application"
    dataset = tmp_path / "dataset.parquet"
    generate_fleet(machines=2, days=5, seed=7).to_parquet(dataset, index=False)
    contract = load_contract(s.features.repo_path)
    out = tmp_path / "entities"
    _, rows = compute_features_step(
        str(dataset), contract, s, str(out), f"cluster-test-{uuid.uuid4().hex[:8]}"
    )
    assert len(rows) > 0 and out.is_file()
