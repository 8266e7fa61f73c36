"""The GitHub workflows are what README.md ("From CI to Kubeflow") says, and `make lint` checks them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from esteira.config import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
README = (ROOT / "README.md").read_text()
SECTION = README.split("## From CI to Kubeflow", 1)[1].split("\n## ", 1)[0]
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+?)@(\S+)\s*(?:#\s*(\S+))?\s*$")


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def readme_table(header: str) -> list[list[str]]:
    """Rows of the section's table whose header row starts with ``header``."""
    lines = SECTION.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().strip("`") for c in line.strip("|").split("|")])
    return rows


def make_targets(job: dict) -> list[str]:
    runs = [s["run"].strip() for s in job["steps"] if "run" in s]
    return [r for r in runs if r.startswith("make ")]


def test_jobs_run_the_readmes_make_targets() -> None:
    documented: dict[tuple[str, str], list[str]] = {}
    for workflow, _on, job, targets in readme_table("workflow"):
        documented[(workflow, job)] = re.findall(r"make [a-z-]+", targets)
    actual = {
        (f"{name}.yml", job): make_targets(spec)
        for name in ("ci", "release")
        for job, spec in load(f"{name}.yml")["jobs"].items()
        if make_targets(spec)
    }
    assert actual == documented
    for targets in actual.values():
        for target in targets:
            assert f"`{target}`" in README or f"{target} " in README, target
            assert re.search(rf"^{target.split()[1]}:", (ROOT / "Makefile").read_text(), re.M)


def test_triggers_artifacts_and_the_stale_readme_check() -> None:
    ci, release = load("ci.yml"), load("release.yml")
    assert set(ci["on"]) == {"pull_request"}
    assert set(release["on"]) == {"push"} and set(release["on"]["push"]) == {"tags"}
    (upload,) = [s for s in ci["jobs"]["build"]["steps"] if "upload-artifact" in s.get("uses", "")]
    assert upload["with"]["path"].split() == [
        "dist/pipelines/",
        "dist/components/",
        "dist/manifests/",
    ]
    # `make lint` (the lint job) fails on a stale component README and checks the workflows
    lint = re.search(r"^lint:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert lint and "docs --check" in lint[1] and "lint-workflows" in lint[1]
    # the images are tagged with the version, the YAML compiled against that tag
    jobs = release["jobs"]
    tag = "${{ needs.version.outputs.version }}"
    for job in ("images", "publish"):
        assert jobs[job]["env"]["ESTEIRA_IMAGE__TAG"] == tag
        assert jobs[job]["env"]["ESTEIRA_IMAGE__REGISTRY"] == "${{ vars.ESTEIRA_IMAGE_REGISTRY }}"
    assert jobs["publish"]["env"]["VERSION"] == tag
    assert "gh release upload" in jobs["release"]["steps"][-1]["run"]


def test_every_action_is_pinned_by_the_sha_the_readme_records() -> None:
    recorded = {(a, t): c for a, t, c in readme_table("action")}
    seen = set()
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for line in path.read_text().splitlines():
            if "uses:" not in line:
                continue
            m = USES.match(line)
            assert m, f"{path.name}: {line.strip()}"
            action, ref, tag = m.groups()
            assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{path.name}: {action}@{ref} not a SHA"
            assert recorded.get((action, tag)) == ref, f"{action} {tag} {ref} not in README"
            seen.add((action, tag))
    assert seen == set(recorded)  # and the README lists no action that is not used


def test_permissions_are_least_privilege() -> None:
    for name in ("ci.yml", "release.yml"):
        workflow = load(name)
        assert workflow["permissions"] == {"contents": "read"}, name
        for job_name, job in workflow["jobs"].items():
            allowed = (
                {"contents": "write"} if (name, job_name) == ("release.yml", "release") else None
            )
            assert job.get("permissions") == allowed, (name, job_name)
            for step in job["steps"]:
                if "actions/checkout@" in step.get("uses", ""):
                    assert step["with"]["persist-credentials"] is False
    # the one job that writes runs no code of the repository: no checkout, no make
    release = load("release.yml")["jobs"]["release"]
    assert not any(
        "checkout" in s.get("uses", "") or "make" in s.get("run", "") for s in release["steps"]
    )
    # secrets reach only the steps that need them, never a whole job
    for name in ("ci.yml", "release.yml"):
        for job in load(name)["jobs"].values():
            assert "secrets." not in str(job.get("env", {}))


def lint_workflows(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "lint-workflows", f"WORKFLOWS={directory}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_workflows_pass_the_lint() -> None:
    result = lint_workflows(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        # an action by tag: zizmor's unpinned-uses (with .github/zizmor.yml)
        (
            (
                "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1",
                "actions/checkout@v7",
            ),
            "unpinned-uses",
        ),
        # a pull request's branch name in a shell: template injection
        (
            ("- run: make lint", "- run: echo ${{ github.head_ref }} && make lint"),
            "template-injection",
        ),
        # not a workflow GitHub accepts (a misspelt key): the JSON schema
        (("\npermissions:", "\npermisions:"), "'permisions' was unexpected"),
    ],
)
def test_a_broken_workflow_copy_fails_the_lint(
    tmp_path: Path, breakage: tuple[str, str], expected: str
) -> None:
    copy = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, copy)
    text = (copy / "ci.yml").read_text()
    old, new = breakage
    assert old in text
    (copy / "ci.yml").write_text(text.replace(old, new, 1))
    result = lint_workflows(copy)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr
