"""No credential in compiled YAML, rendered manifests, logs, summaries, registry metadata or errors.

Known credentials are planted in the environment (the `s3_server` fixture), the
training pipeline runs with storage and the offline store on the S3-compatible
server, pipelines are compiled and manifests rendered, and every output is scanned.
"""

from pathlib import Path

import pytest

from esteira.errors import EsteiraError
from esteira.storage import open_storage
from esteira_cli.compile import compile_pipeline
from esteira_cli.training_run import run_training
from testkit.pipeline import small_workspace
from testkit.services import S3_ACCESS_KEY, S3_SECRET_KEY

pytestmark = pytest.mark.slow
PLANTED = (S3_ACCESS_KEY, S3_SECRET_KEY)


def scan_tree(root: Path) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            data = path.read_bytes()
            hits += [f"{path}: {secret[:6]}..." for secret in PLANTED if secret.encode() in data]
    return hits


def serve_and_predict(settings, tmp_path: Path) -> None:
    """The predictor reads the S3 registry and writes the prediction log there; its log is kept."""
    import httpx
    import yaml

    from esteira.net import free_port
    from testkit.serving import ServerProcess

    config = tmp_path / "serving.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude_none=True)))
    port = free_port()
    server = ServerProcess(
        "predictor",
        ["--config", str(config), "--http-port", str(port), "--grpc-port", "0"],
        tmp_path / "logs" / "predictor.log",
    ).start()
    try:
        url = f"http://127.0.0.1:{port}"
        server.wait_http(f"{url}/v2/health/ready", timeout=120)
        meta = httpx.get(f"{url}/v2/models/{settings.model.name}").json()
        row = {
            i["name"]: (["model1"] if i["datatype"] == "BYTES" else [1.0]) for i in meta["inputs"]
        }
        inputs = [
            {"name": n, "shape": [1], "datatype": i["datatype"], "data": row[n]}
            for n, i in zip(row, meta["inputs"], strict=True)
        ]
        answer = httpx.post(
            f"{url}/v2/models/{settings.model.name}/infer", json={"inputs": inputs}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        bad = httpx.post(
            f"{url}/v2/models/{settings.model.name}/infer", json={"inputs": []}, timeout=10
        )
        assert bad.status_code == 400  # an error message is scanned too
    finally:
        assert server.stop() == 0  # a clean stop flushes the prediction log
    assert open_storage(settings.storage).list(f"predictions/{settings.model.name}")


def test_no_credential_leaves_the_process(tmp_path, s3_settings, capfd):
    settings = small_workspace(
        tmp_path,
        storage={
            "kind": "s3",
            "endpoint": s3_settings.endpoint,
            "bucket": s3_settings.bucket,
            "retries": 1,
        },
        features={"offline_store": "s3"},
    )
    summary = run_training(settings, tmp_path / "run", root=tmp_path / "outputs")
    assert summary["status"] == "ok", summary.get("error")
    assert summary["model_uri"].startswith(f"s3://{s3_settings.bucket}/models/machine-failure/v1")

    serve_and_predict(settings, tmp_path)
    for name in ("training",):
        compile_pipeline(name, settings, tmp_path / "compiled")
    from esteira.manifests import render_all

    render_all(tmp_path / "manifests")

    store = open_storage(settings.storage)
    objects = tmp_path / "s3-objects"
    for key in store.list(""):
        if key.endswith((".json", ".yaml", ".parquet")):
            (objects / key).parent.mkdir(parents=True, exist_ok=True)
            (objects / key).write_bytes(store.get_bytes(key))
    assert any(objects.rglob("metadata.json"))

    out, err = capfd.readouterr()
    assert "machine-failure" in out + err  # the logs were captured
    leaks = scan_tree(tmp_path) + [f"log: {s[:6]}..." for s in PLANTED if s in out + err]
    assert leaks == []


def test_storage_errors_do_not_echo_credentials(s3_server, s3_settings):
    store = open_storage(s3_settings)
    s3_server.stop()
    with pytest.raises(EsteiraError) as err:
        store.get_bytes("anything")
    assert not any(s in err.value.message for s in PLANTED)
