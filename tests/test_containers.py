"""The images, for real: compiled YAML under kfp.local's DockerRunner, and what the layers hold.

Needs a Docker engine and the images (`make images`). With CI=true, an engine that cannot
be started (docker.io is installed if missing) or images that cannot be built fail the
tests; elsewhere they skip with the reason. The engine is started here only when none
answers (docker/engine.sh), and then stopped here.
"""

from __future__ import annotations

import io
import os
import re
import ssl
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from esteira import engine
from esteira.config import Settings
from esteira.data import write_fleet
from esteira.errors import EsteiraError
from esteira_cli.local_run import run_pipeline
from testkit.pipeline import generate_fleet
from tests.tiny_pipelines import compile_to, tiny_copy, tiny_forgets

CI = os.environ.get("CI", "").lower() == "true"
IMAGES = Settings().image
# the bundle docker/build.sh hands to the build stages
HOST_BUNDLE = os.environ.get("ESTEIRA_BUILD_CA") or os.environ.get(
    "SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"
)
pytestmark = pytest.mark.docker


def _unavailable(reason: str) -> None:
    if CI:
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def docker_host() -> Iterator[str]:
    started_here = False
    try:
        engine.client().close()
        host = engine.docker_host()
    except EsteiraError:
        if not CI and os.environ.get("ESTEIRA_TEST_START_ENGINE", "1") == "0":
            pytest.skip("no Docker engine answers (ESTEIRA_TEST_START_ENGINE=0)")
        try:
            host = engine.start(install=CI)  # outside CI, never apt-get from a test run
            started_here = True
        except (EsteiraError, OSError, subprocess.TimeoutExpired) as exc:
            _unavailable(f"no Docker engine could be started: {exc}")
    saved = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host
    client = engine.client()
    missing = [r for r in (IMAGES.reference, IMAGES.serving_reference) if not client.images.list(r)]
    client.close()
    if missing:
        if not CI:
            if started_here:
                engine.stop()
            pytest.skip(f"images not built: {', '.join(missing)}; run `make images`")
        subprocess.run([str(engine.BUILD_SCRIPT)], check=True, timeout=1500)
    try:
        yield host
    finally:
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved
        if started_here:
            engine.stop()


def _workspace(tmp_path: Path) -> Settings:
    source = tmp_path / "data" / "fleet.parquet"
    source.parent.mkdir()
    write_fleet(generate_fleet(machines=3, days=2, seed=1), str(source))
    source.chmod(0o600)  # written by the host, readable only by its owner
    return Settings.model_validate(
        {
            "data": {"source_uri": str(source)},
            "storage": {"root": str(tmp_path / "store")},
            "features": {"repo_path": str(tmp_path / "feature_repo")},
        }
    )


def test_compiled_yaml_runs_in_the_component_image(docker_host: str, tmp_path: Path) -> None:
    settings = _workspace(tmp_path)
    yaml_path = compile_to(tiny_copy, tmp_path / "pipelines" / "tiny-copy.yaml")
    run = run_pipeline(
        "tiny-copy",
        settings,
        {"source": settings.data.source_uri, "store": settings.storage.root},
        root=tmp_path / "outputs",
        runner="docker",
        pipeline_yaml=yaml_path,
    )
    assert run.status == "ok", run.error
    assert set(run.tasks) == {"copy-rows", "store-rows"}
    for task in run.tasks.values():
        assert task["image"] == IMAGES.reference  # the image named in the YAML
        assert re.fullmatch(r"[0-9a-f]{64}", task["container_id"])
        assert task["exit_code"] == 0
    rows = len(generate_fleet(machines=3, days=2, seed=1))
    assert run.outputs["copy-rows"]["parameters"]["Output"] == rows
    written = Path(settings.storage.root) / "rows.csv"
    assert written.read_text().count("\n") == rows + 1  # the host reads what the task wrote
    uid = int(run.outputs["store-rows"]["parameters"]["Output"].rsplit("uid=", 1)[1])
    assert uid != 0  # non-root in the container
    assert uid == (os.getuid() or 10001)
    client = engine.client()
    try:  # containers are removed once their exit code and log are read
        assert not client.containers.list(all=True, filters={"label": "esteira.pipeline-root"})
    finally:
        client.close()


def test_a_container_that_exits_0_without_outputs_fails_the_run(
    docker_host: str, tmp_path: Path
) -> None:
    yaml_path = compile_to(tiny_forgets, tmp_path / "pipelines" / "tiny-forgets.yaml")
    run = run_pipeline(
        "tiny-forgets",
        _workspace(tmp_path),
        root=tmp_path / "outputs",
        runner="docker",
        pipeline_yaml=yaml_path,
    )
    assert run.status == "failed"
    assert "task forgets-outputs" in run.error
    assert "did not write its declared outputs" in run.error
    assert "leaving without writing outputs" in run.error  # the log tail
    assert run.tasks["forgets-outputs"]["exit_code"] == 0
    assert "count" not in run.tasks


def test_engine_stopped_is_one_line_naming_make_images(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    yaml_path = compile_to(tiny_forgets, tmp_path / "pipelines" / "tiny-forgets.yaml")
    with pytest.raises(EsteiraError) as err:
        run_pipeline(
            "tiny-forgets",
            Settings(),
            root=tmp_path / "o",
            runner="docker",
            pipeline_yaml=yaml_path,
        )
    assert "no Docker engine answers" in err.value.message
    assert "make images" in err.value.message
    assert "\n" not in err.value.message
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def _host_only_certs() -> list[bytes]:
    """DER of the CAs the build host trusts beyond Mozilla's set (Debian's packaged copy
    and certifi's): a corporate or proxy CA, the kind that must stay out of the images."""
    import certifi

    def ders(*paths: str | Path) -> set[bytes]:
        text = "".join(Path(p).read_text() for p in paths)
        blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
        return {ssl.PEM_cert_to_DER_cert(b) for b in blocks}

    mozilla = ders(certifi.where(), *Path("/usr/share/ca-certificates/mozilla").glob("*.crt"))
    return sorted(ders(HOST_BUNDLE) - mozilla)


def _needles(der: bytes) -> list[bytes]:
    """How a CA would appear in a file: its DER, or a line of its PEM body."""
    pem = ssl.DER_cert_to_PEM_cert(der).splitlines()
    return [der[40:104], pem[len(pem) // 2].encode()]


def _layers_holding(reference: str, needles: list[bytes]) -> list[str]:
    """Files in the image's saved layers that contain any needle."""
    proc = subprocess.Popen(["docker", "save", reference], stdout=subprocess.PIPE)
    hits = []
    with tarfile.open(fileobj=proc.stdout, mode="r|") as saved:
        for member in saved:
            if not member.name.endswith("layer.tar"):
                continue
            layer = io.BytesIO(saved.extractfile(member).read())
            with tarfile.open(fileobj=layer) as files:
                for f in files:
                    if f.isfile() and f.size < 50_000_000:
                        data = files.extractfile(f).read()
                        if any(n in data for n in needles):
                            hits.append(f"{member.name}:{f.name}")
    proc.wait()
    return hits


def test_no_host_only_ca_in_the_final_images(docker_host: str) -> None:
    certs = _host_only_certs()
    if not certs:
        pytest.skip("the build host trusts no CA beyond Mozilla's bundle: nothing to look for")
    needles = [n for der in certs for n in _needles(der)]
    # the needles find the CAs where they are: the bundle the build stages were given
    assert any(n in Path(HOST_BUNDLE).read_bytes() for n in needles)
    for reference in (IMAGES.reference, IMAGES.serving_reference):
        assert _layers_holding(reference, needles) == [], reference
