"""Static checks of the image recipes, and build.sh's behaviour with and without Docker."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "serving.Dockerfile", DOCKER / "spark.Dockerfile"]
PINNED_IMAGE = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*|@sha256:[0-9a-f]{64})$")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages(path: Path) -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage (each starts at a FROM)."""
    groups: list[list[tuple[str, str]]] = []
    for ins in instructions(path):
        if ins[0] == "FROM":
            groups.append([])
        if groups:
            groups[-1].append(ins)
    return groups


def pip_installed(words: list[str]) -> list[str]:
    """Package arguments of a `pip install` / `python -m pip install` command, else []."""
    if "install" not in words or not {"pip", "pip3"} & set(words[: words.index("install")]):
        return []
    return [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]


def test_pip_install_parser_sees_unpinned_packages() -> None:
    assert pip_installed(shlex.split('pip install --no-cache-dir "uv==0.13.9" feast')) == [
        "uv==0.13.9",
        "feast",
    ]
    assert pip_installed(shlex.split("python -m pip install requests")) == ["requests"]
    assert pip_installed(shlex.split("uv sync --frozen")) == []


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned(path: Path) -> None:
    """FROM takes BASE_IMAGE (docker/build.sh passes image.base); its default is pinned."""
    from esteira.config import ImageSettings

    args_before_from = {}
    for kw, args in instructions(path):
        if kw == "FROM":
            break
        if kw == "ARG":
            name, _, default = args.partition("=")
            args_before_from[name] = default
    assert args_before_from.get("BASE_IMAGE") == ImageSettings().base
    assert PINNED_IMAGE.match(ImageSettings().base)
    aliases: set[str] = set()
    froms = [args.split() for kw, args in instructions(path) if kw == "FROM"]
    assert froms
    for args in froms:
        image = args[0]
        if image not in aliases:
            assert image == "${BASE_IMAGE}" or PINNED_IMAGE.match(image), f"{path.name}: {image}"
        if len(args) == 3 and args[1].upper() == "AS":
            aliases.add(args[2])


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_build_host_ca_only_in_the_build_stage(path: Path) -> None:
    *build, final = stages(path)
    assert any("host-ca.crt" in args for stage in build for kw, args in stage if kw == "COPY")
    assert not [args for kw, args in final if "host-ca" in args or "SSL_CERT_FILE" in args]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_runtime_stage_runs_as_uid_10001(path: Path) -> None:
    final = stages(path)[-1]
    users = [args for kw, args in final if kw == "USER"]
    assert users and users[-1].split(":")[0] == "10001"
    assert ("WORKDIR", "/app") in final
    env = " ".join(args for kw, args in final if kw == "ENV")
    assert "PATH=/app/.venv/bin:$PATH" in env


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dependencies_come_from_the_lock(path: Path) -> None:
    runs = [args for kw, args in instructions(path) if kw == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs
    for run in syncs:
        assert "--frozen" in run and "--no-dev" in run, run
    for run in runs:
        for command in re.split(r"&&|;", run):
            for package in pip_installed(shlex.split(command)):
                assert re.fullmatch(r"[\w.-]+==[\w.]+", package), f"unpinned: {package}"
    copied = {src for kw, args in instructions(path) if kw == "COPY" for src in args.split()[:-1]}
    assert {"pyproject.toml", "uv.lock"} <= copied


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_no_secrets_in_the_image(path: Path) -> None:
    text = path.read_text().upper()
    for word in ("AWS_SECRET", "AWS_ACCESS_KEY", "PASSWORD", "TOKEN", ".ENV"):
        assert word not in text, word


def test_component_image_copies_every_source_tree() -> None:
    final = stages(DOCKER / "Dockerfile")[-1]
    copied = {args.split()[0].rstrip("/") for kw, args in final if kw == "COPY"}
    trees = {"esteira", "esteira_cli", "components", "pipelines", "serving", "feature_repo"}
    assert trees <= copied


def test_serving_image_entrypoint() -> None:
    final = stages(DOCKER / "serving.Dockerfile")[-1]
    assert ("ENTRYPOINT", '["python", "-m", "serving"]') in final


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "dist", "data", "feature_repo/data", ".env"} <= ignored
    assert not {"README.md", "uv.lock", "pyproject.toml"} & ignored


# ---- build.sh -------------------------------------------------------------------------------


def run_build(tmp_path: Path, docker_script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run build.sh with a fake `docker` first on PATH (and no engine started for real)."""
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(f"#!/usr/bin/env bash\n{docker_script}\n")
    fake.chmod(0o755)
    environ = {
        **os.environ,
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "ESTEIRA_ENGINE_START": "0",
        "ESTEIRA_IMAGES_OUT": str(tmp_path / "images"),
        "DOCKER_HOST": f"unix://{tmp_path / 'fake.sock'}",
        **env,
    }
    return subprocess.run(
        [str(DOCKER / "build.sh")], capture_output=True, text=True, env=environ, timeout=120
    )


def test_build_sh_syntax() -> None:
    subprocess.run(["bash", "-n", str(DOCKER / "build.sh")], check=True)


def test_build_sh_without_docker_engine_fails_clearly(tmp_path: Path) -> None:
    proc = run_build(tmp_path, "exit 1")
    assert proc.returncode == 1
    assert "no Docker engine answers" in proc.stderr


def test_build_sh_tags_images_from_the_config(tmp_path: Path) -> None:
    log = tmp_path / "docker.log"
    proc = run_build(
        tmp_path,
        f'echo "$*" >> {log}; [[ $1 == image ]] && echo "sha256:abc 123000000";'
        ' [[ $1 == build ]] && echo "Step 1/2 : FROM base"; exit 0',
        ESTEIRA_IMAGE__REGISTRY="registry.example/ml",
        ESTEIRA_IMAGE__TAG="9.9.9",
        ESTEIRA_IMAGE__BASE="debian.example/python:3.11.2-bookworm",
    )
    assert proc.returncode == 0, proc.stderr
    builds = [line for line in log.read_text().splitlines() if line.startswith("build")]
    base = "--build-arg BASE_IMAGE=debian.example/python:3.11.2-bookworm"
    assert builds == [
        f"build --network host {base} -f docker/Dockerfile -t registry.example/ml/esteira:9.9.9 .",
        f"build --network host {base} -f docker/serving.Dockerfile"
        " -t registry.example/ml/esteira-serving:9.9.9 .",
    ]
    assert "registry.example/ml/esteira-serving:9.9.9" in proc.stdout and "123 MB" in proc.stdout
