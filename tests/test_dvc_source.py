"""dvc:// sources: a git repository with DVC and a local-directory remote (no network), two
data revisions, a training run from each by ``rev``, and one-line errors for what goes wrong."""

import contextlib
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from esteira.errors import DataError
from esteira.ingest import fingerprint, ingest, parse_dvc_uri
from esteira_cli.cli import main
from esteira_cli.training_run import run_training
from testkit.pipeline import generate_fleet, small_workspace

DATA = "data/fleet.parquet"


def _run(repo: Path, *args: str) -> str:
    """git in a subprocess; dvc's own command line in this process (no interpreter start)."""
    if args[0] == "dvc":
        from dvc.cli import main as dvc

        with contextlib.chdir(repo):
            assert dvc(list(args[1:])) == 0, args
        return ""
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "HOME": str(repo.parent),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory):
    """``repo`` with DVC, remote ``remote/`` (a local directory) and tags v1, v2 of DATA; the
    repo's own cache is removed, so every read comes from the remote. Returns the workspace,
    the repo, the remote and per tag (git commit, DVC md5, the frame)."""
    ws = tmp_path_factory.mktemp("dvc")
    settings = small_workspace(ws, machines=20, days=50)  # ws/fleet.parquet: revision 1
    repo, remote = ws / "repo", ws / "remote"
    (repo / "data").mkdir(parents=True)
    _run(repo, "git", "init", "-q", "-b", "main")
    _run(repo, "dvc", "init", "-q")
    _run(repo, "dvc", "remote", "add", "-d", "local", str(remote))
    frames = {
        "v1": pd.read_parquet(settings.data.source_uri),
        "v2": generate_fleet(machines=20, days=55, seed=7),
    }
    revisions = {}
    for tag, frame in frames.items():
        frame.to_parquet(repo / DATA, index=False)
        _run(repo, "dvc", "add", "-q", DATA)
        _run(repo, "git", "add", "-A")
        _run(repo, "git", "commit", "-q", "-m", f"fleet {tag}")
        _run(repo, "git", "tag", tag)
        _run(repo, "dvc", "push", "-q")
        md5 = yaml.safe_load((repo / f"{DATA}.dvc").read_text())["outs"][0]["md5"]
        revisions[tag] = (_run(repo, "git", "rev-parse", "HEAD"), md5, frame)
    shutil.rmtree(repo / ".dvc" / "cache")
    return ws, repo, remote, revisions


def uri(repo: Path, rev: str, path: str = DATA) -> str:
    return f"dvc://{repo}?path={path}&rev={rev}"


def test_each_revision_reads_its_own_bytes_with_its_lineage(dvc_repo):
    ws, repo, _, revisions = dvc_repo
    settings = small_workspace(ws)
    from esteira.contract import load_contract

    contract = load_contract(settings.features.repo_path)
    for tag, (commit, md5, frame) in revisions.items():
        got = ingest(uri(repo, tag), settings, contract)
        assert len(got.frame) == len(frame)
        assert got.lineage | {"content_hash": None} == {
            "kind": "dvc",
            "repo": str(repo),
            "path": DATA,
            "rev": tag,
            "git_rev": commit,
            "dvc_md5": md5,
            "content_hash": None,
        }
        assert (
            got.lineage["content_hash"] == got.content_hash == fingerprint(uri(repo, tag), settings)
        )
    assert revisions["v1"][:2] != revisions["v2"][:2]


def test_a_bad_rev_a_missing_path_an_unreachable_remote_are_one_line_each(dvc_repo):
    ws, repo, remote, _ = dvc_repo
    settings = small_workspace(ws)
    cases = {
        uri(repo, "v9"): ("rev 'v9' is not a branch, tag or commit", "set rev="),
        uri(repo, "v1", "data/none.parquet"): ("no file 'data/none.parquet'", "set path="),
        f"dvc://{repo}?rev=v1": ("has no path=", "dvc://<git repo url or path>"),
        uri(ws / "nowhere", "v1"): ("cannot open", "point dvc:// at a reachable git repository"),
    }
    for source, (problem, fix) in cases.items():
        with pytest.raises(DataError) as caught:
            fingerprint(source, settings)
        text = str(caught.value)
        assert "data.source_uri" in text and problem in text and fix in text
        assert "\n" not in text
    moved = remote.with_name("remote-offline")
    remote.rename(moved)
    try:
        with pytest.raises(DataError) as caught:
            fingerprint(uri(repo, "v2"), settings)
    finally:
        moved.rename(remote)
    text = str(caught.value)
    assert "cannot fetch 'data/fleet.parquet'" in text and "from its DVC remote" in text
    assert "`dvc push`" in text and "\n" not in text
    assert parse_dvc_uri(f"dvc://{repo}?path={DATA}").rev is None  # HEAD


@pytest.mark.slow
def test_training_from_each_revision_records_it_and_models_show_prints_it(
    dvc_repo, monkeypatch, capsys
):
    ws, repo, _, revisions = dvc_repo
    for number, tag in enumerate(("v1", "v2"), start=1):
        settings = small_workspace(
            ws,
            data={"source_uri": uri(repo, tag)},
            gate={"thresholds": {"roc_auc": 0.5}},
            kserve={"deploy": False},  # not what this test is about: one task less
        )
        summary = run_training(settings, ws / f"run-{tag}", root=ws / "outputs")
        assert summary["status"] == "ok", summary.get("error")
        assert summary["registry"]["version"] == number
        assert summary["data"]["lineage"]["git_rev"] == revisions[tag][0]
    monkeypatch.setenv("ESTEIRA_STORAGE__ROOT", str(ws / "store"))
    monkeypatch.chdir(ws)
    for number, tag in enumerate(("v1", "v2"), start=1):
        capsys.readouterr()
        assert main(["models", "show", f"machine-failure:{number}"]) == 0
        shown = json.loads(capsys.readouterr().out)
        commit, md5, _ = revisions[tag]
        assert shown["data"] | {"content_hash": None} == {
            "source_uri": uri(repo, tag),
            "content_hash": None,
            "repo": str(repo),
            "path": DATA,
            "rev": tag,
            "git_rev": commit,
            "dvc_md5": md5,
        }
        assert shown["data"]["content_hash"].startswith("sha256:")
        assert shown["gate"]["rule"] == "absolute"
        # the card names the data version too
        assert main(["models", "card", f"machine-failure:{number}"]) == 0
        card = capsys.readouterr().out
        # lstrip: a background log thread of the run before can leave a stray indent in stdout
        assert card.lstrip().startswith(f"# Model card: machine-failure v{number}")
        assert commit in card and md5 in card and "## Metrics by model" in card


def test_an_s3_remote_is_read_with_the_environments_credentials(s3_server, tmp_path, monkeypatch):
    """MinIO/S3 (moto here): the remote's endpointurl from the repository's DVC config, the
    credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (the s3_server fixture sets them)."""
    import boto3

    from esteira.ingest import read_dvc

    bucket = f"dvc-{tmp_path.name[-12:].lower().replace('_', '-')}"
    endpoint = f"http://{s3_server.endpoint}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    _run(repo, "git", "init", "-q", "-b", "main")
    _run(repo, "dvc", "init", "-q")
    _run(repo, "dvc", "remote", "add", "-d", "minio", f"s3://{bucket}/dvc")
    _run(repo, "dvc", "remote", "modify", "minio", "endpointurl", endpoint)
    (repo / "data" / "x.csv").write_text("a,b\n1,2\n")
    _run(repo, "dvc", "add", "-q", "data/x.csv")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-q", "-m", "x")
    _run(repo, "dvc", "push", "-q")
    shutil.rmtree(repo / ".dvc" / "cache")
    data, lineage = read_dvc(f"dvc://{repo}?path=data/x.csv")
    assert data == b"a,b\n1,2\n" and lineage["rev"] == "HEAD" and lineage["dvc_md5"]
    s3_server.stop()
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore: no retries against a stopped server
    with pytest.raises(DataError) as caught:
        read_dvc(f"dvc://{repo}?path=data/x.csv")
    text = str(caught.value)
    assert "from its DVC remote" in text and "AWS_ACCESS_KEY_ID" in text and "\n" not in text
