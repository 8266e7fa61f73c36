"""kfp.local tasks, checked: declared outputs must exist, and docker tasks are recorded.

kfp.local (2.17) has two gaps this module closes while a run is in progress
(:func:`checked_tasks` swaps kfp.local's task handler classes for the subclasses below and
restores them afterwards; the subclasses keep kfp's constructor and return type):

- **Silent success.** ``DockerTaskHandler`` starts containers with ``auto_remove``; when
  the container is gone before its exit code is read, kfp counts exit code 0. Here the
  container is kept until its exit code and log tail are read, then removed.
- **Missing outputs.** A task that exits 0 without writing its declared outputs "succeeds"
  and the next task fails with a confusing "not found". Here it fails, with its log tail.
- **Peak memory.** A subprocess task runs under a small reaper that reports the peak
  resident set of the task's processes (its shell and the Python under it, the largest of
  them) from ``getrusage(RUSAGE_CHILDREN)``: :attr:`TaskLedger.peak_rss_kb`, per task name
  (a task that runs more than once, a ParallelFor body, keeps its largest).

:func:`docker_runner` builds the ``DockerRunner`` for a compiled pipeline: the images it
names must be in the engine; host network (S3, Redis on 127.0.0.1); the working directory
and every local path in the task config (data source, feature repo, local registry)
mounted at the same path, so relative and absolute paths mean the same inside and out.

Users and permissions, both ways: a non-root caller's tasks run as the caller's uid:gid,
so each side owns and can read what the other wrote. Under root, tasks run as the image's
non-root user and the mounted paths are handed to that uid (root reads them anyway; a
0600 file the host wrote is readable inside only that way).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esteira.config import Settings
from esteira.errors import EsteiraError
from esteira.kfp_support import ERRORS_DIR_ENV

LOG_TAIL_LINES = 20
# artifacts that carry their content in executor_output metadata, not in a file at their uri
_METADATA_ONLY = {
    "system.Metrics",
    "system.ClassificationMetrics",
    "system.SlicedClassificationMetrics",
}
_PASSED_ENV = ("ESTEIRA_", "AWS_")


@dataclass
class TaskLedger:
    """What each task ran in; where a failed check leaves its one-line message."""

    errors_dir: Path
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    peak_rss_kb: dict[str, int] = field(default_factory=dict)  # subprocess tasks
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail(self, task: str, message: str) -> None:
        self.errors_dir.mkdir(parents=True, exist_ok=True)
        (self.errors_dir / f"{task}.json").write_text(json.dumps({"task": task, "error": message}))

    def peak(self, task: str, kb: int) -> None:
        with self._lock:
            self.peak_rss_kb[task] = max(kb, self.peak_rss_kb.get(task, 0))


_LEDGER: TaskLedger | None = None


def executor_input(full_command: list[str]) -> dict[str, Any]:
    """The executor input kfp placed in a task's command (after ``--executor_input``)."""
    for flag, value in zip(full_command, full_command[1:], strict=False):
        if flag == "--executor_input":
            return json.loads(value)
    for part in full_command:  # a shell-wrapped command: the JSON is inside one argument
        if "--executor_input" in part:
            raise EsteiraError("task command", "executor input is not a separate argument", "")
    return {}


def task_name(ex_input: dict[str, Any]) -> str:
    out = ex_input.get("outputs", {}).get("outputFile")
    return Path(out).parent.name if out else "task"


def missing_outputs(ex_input: dict[str, Any]) -> list[str]:
    """Declared outputs a finished task did not write (empty when all are there)."""
    outputs = ex_input.get("outputs", {})
    out_file = Path(outputs["outputFile"]) if outputs.get("outputFile") else None
    written: dict[str, Any] = {}
    if out_file and out_file.exists():
        try:
            written = json.loads(out_file.read_text() or "{}")
        except json.JSONDecodeError:
            return [f"executor output {out_file} (not JSON)"]
    missing = []
    for name, spec in outputs.get("parameters", {}).items():
        if name not in written.get("parameterValues", {}) and not Path(spec["outputFile"]).exists():
            missing.append(f"parameter {name}")
    for name, group in outputs.get("artifacts", {}).items():
        for artifact in group.get("artifacts", []):
            kind = artifact.get("type", {}).get("schemaTitle", "")
            if kind in _METADATA_ONLY:
                if name not in written.get("artifacts", {}):
                    missing.append(f"artifact {name} ({kind})")
            elif not Path(artifact["uri"]).exists():
                missing.append(f"artifact {name} ({artifact['uri']})")
    return missing


def _check(ex_input: dict[str, Any], log_tail: str | None) -> bool:
    """True when the task wrote what it declared; else records why and returns False."""
    missing = missing_outputs(ex_input)
    if not missing:
        return True
    name = task_name(ex_input)
    tail = (
        f"; its log ends: {' | '.join(log_tail.strip().splitlines()[-5:]) or '(empty)'}"
        if log_tail is not None
        else "; see its log above"
    )
    message = f"exited 0 but did not write its declared outputs: {', '.join(missing)}{tail}"
    print(f"[esteira] task {name}: {message}", flush=True)
    if _LEDGER is not None:
        _LEDGER.fail(name, message)
    return False


# The task runs under a small Python that reaps it and writes the largest resident set among
# its reaped children (the task's shell and everything under it) to the file it is given.
# Not measured from here: a process exec'd by a child of this driver starts with the driver's
# own high-water mark (Linux keeps it across fork and exec), hundreds of MB for a small task.
_REAPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "with open(sys.argv[1], 'w') as f:\n"
    "    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


def run_measured(full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
    """kfp.local's ``run_local_subprocess`` (same command, output and exit code), with the
    task's peak resident set (kB) going into the ledger."""
    import sys
    import tempfile

    env = {**os.environ, **env_vars} if env_vars else None
    fd, peak_file = tempfile.mkstemp(prefix="esteira-peak-", suffix=".txt")
    os.close(fd)
    try:
        with subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _REAPER, peak_file, *full_command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=env,
        ) as process:
            assert process.stdout is not None
            for line in iter(process.stdout.readline, ""):
                print(line, end="")
            print("\n")
            code = process.wait()
        kb = Path(peak_file).read_text().strip()
    finally:
        Path(peak_file).unlink(missing_ok=True)
    if _LEDGER is not None and kb.isdigit():  # ru_maxrss: kilobytes on Linux
        _LEDGER.peak(task_name(executor_input(full_command)), int(kb))
    return code


def _handler_classes() -> tuple[type, type]:
    from kfp.local import docker_task_handler, status, subprocess_task_handler

    class CheckedSubprocessTaskHandler(subprocess_task_handler.SubprocessTaskHandler):
        def run(self) -> status.Status:
            result = super().run()
            if result == status.Status.SUCCESS and not _check(
                executor_input(self.full_command), None
            ):
                return status.Status.FAILURE
            return result

    class CheckedDockerTaskHandler(docker_task_handler.DockerTaskHandler):
        def run(self) -> status.Status:
            from esteira import engine

            ex_input = executor_input(self.full_command)
            name = task_name(ex_input)
            client = engine.client()
            try:
                args = dict(self.runner.container_run_args)
                args.pop("auto_remove", None)
                container = client.containers.run(
                    image=self.image,
                    command=self.full_command,
                    detach=True,
                    volumes=self.get_volumes_to_mount(client),
                    environment=self.env_vars,
                    **args,
                )
                try:
                    for line in container.logs(stream=True, follow=True):
                        print(line.decode(errors="replace"), end="")
                    code = container.wait()["StatusCode"]
                    tail = container.logs(tail=LOG_TAIL_LINES).decode(errors="replace")
                finally:
                    container.remove(force=True)
            finally:
                client.close()
            if _LEDGER is not None:
                _LEDGER.tasks[name] = {
                    "image": self.image,
                    "container_id": container.id,
                    "exit_code": code,
                }
            if code != 0:
                if _LEDGER is not None and not (_LEDGER.errors_dir / f"{name}.json").exists():
                    last = " | ".join(tail.strip().splitlines()[-5:])
                    _LEDGER.fail(name, f"container exited with code {code}; its log ends: {last}")
                return status.Status.FAILURE
            return status.Status.SUCCESS if _check(ex_input, tail) else status.Status.FAILURE

    return CheckedSubprocessTaskHandler, CheckedDockerTaskHandler


@contextlib.contextmanager
def checked_tasks(ledger: TaskLedger) -> Iterator[TaskLedger]:
    """kfp.local's task handlers replaced by the checked ones for the duration of a run."""
    global _LEDGER
    from kfp.local import docker_task_handler, subprocess_task_handler

    sub_cls, docker_cls = _handler_classes()
    saved = (subprocess_task_handler.SubprocessTaskHandler, docker_task_handler.DockerTaskHandler)
    saved_run = subprocess_task_handler.run_local_subprocess
    subprocess_task_handler.SubprocessTaskHandler = sub_cls
    docker_task_handler.DockerTaskHandler = docker_cls
    subprocess_task_handler.run_local_subprocess = run_measured
    _LEDGER = ledger
    try:
        yield ledger
    finally:
        subprocess_task_handler.SubprocessTaskHandler, docker_task_handler.DockerTaskHandler = saved
        subprocess_task_handler.run_local_subprocess = saved_run
        _LEDGER = None


# ---- the DockerRunner for a compiled pipeline ---------------------------------------------


def pipeline_images(pipeline: Any) -> set[str]:
    """Every image a compiled pipeline's executors name."""
    spec = pipeline.pipeline_spec
    executors = spec.deployment_spec["executors"]
    return {e["container"]["image"] for e in executors.values() if "container" in e}


def local_paths(settings: Settings) -> tuple[list[Path], list[Path]]:
    """(read-only, writable) host paths the tasks use, from the (resolved) task config."""
    read_only, writable = [], []
    if "://" not in settings.data.source_uri:
        read_only.append(Path(settings.data.source_uri).parent)
    writable.append(Path(settings.features.repo_path))
    if settings.storage.kind == "local":
        writable.append(Path(settings.storage.root))
    return read_only, writable


def _image_user(attrs: dict[str, Any]) -> tuple[int, int] | None:
    user = (attrs.get("Config") or {}).get("User") or ""
    uid, _, gid = user.partition(":")
    if uid.isdigit():
        return int(uid), int(gid) if gid.isdigit() else int(uid)
    return None


def _hand_over(paths: list[Path], uid: int, gid: int) -> None:
    """Give ``paths`` (recursively) to uid:gid, skipping what it already owns."""
    for top in paths:
        for dirpath, dirnames, filenames in os.walk(top):
            for p in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                st = os.lstat(p)
                if (st.st_uid, st.st_gid) != (uid, gid):
                    os.lchown(p, uid, gid)


def docker_runner(pipeline: Any, settings: Settings, root: Path, errors_dir: Path) -> Any:
    """A ``DockerRunner`` for ``pipeline``; EsteiraError when the engine or an image is missing."""
    from kfp import local

    import docker
    from esteira import engine

    client = engine.client()
    try:
        attrs = {
            ref: engine.require_image(client, ref) for ref in sorted(pipeline_images(pipeline))
        }
    finally:
        client.close()
    read_only, writable = local_paths(settings)
    for p in writable:
        p.mkdir(parents=True, exist_ok=True)
    cwd = Path.cwd()
    mounts = [
        docker.types.Mount(str(p), str(p), type="bind", read_only=True)
        for p in read_only
        if p.exists()
    ] + [docker.types.Mount(str(p), str(p), type="bind") for p in writable]
    environment = {k: v for k, v in os.environ.items() if k.startswith(_PASSED_ENV)}
    environment[ERRORS_DIR_ENV] = str(errors_dir)
    options: dict[str, Any] = {
        "mounts": mounts,
        "network_mode": "host",
        "working_dir": str(cwd),
        "environment": environment,
        "labels": {"esteira.pipeline-root": str(root)},
    }
    if os.getuid() != 0:
        options["user"] = f"{os.getuid()}:{os.getgid()}"
    else:
        users = {u for a in attrs.values() if (u := _image_user(a))}
        if len(users) == 1:
            uid, gid = users.pop()
            errors_dir.mkdir(parents=True, exist_ok=True)
            _hand_over([root, *writable, *(p for p in read_only if p.exists())], uid, gid)
    return local.DockerRunner(**options)
