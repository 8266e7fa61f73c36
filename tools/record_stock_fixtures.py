"""Record requests and answers from KServe's own sklearn server, for ``kserve.runtime:
kserve-sklearnserver``.

    python tools/record_stock_fixtures.py --kserve /work/ext/kserve --storage-lib /work/ext/pylib

``--kserve`` is a checkout (or ``git archive``) of github.com/kserve/kserve *outside* this
repository; its ``python/sklearnserver`` is run as it is, never copied here. The server
imports ``kserve`` (this venv has it) and ``kserve_storage`` (``--storage-lib``: a
directory with PyPI's ``kserve-storage``, e.g. ``uv pip install --target DIR --no-deps
kserve-storage==0.21.0``). The KServe commit is read with git, or from a ``COMMIT`` file
in the checkout, or given with ``--commit``.

The script builds the test world (``testkit.serving.build_world``: Feast features,
a model of the training kind in a local registry), puts the registry version's files in a
models directory as KServe's storage initializer would, starts ``python -m sklearnserver``
on free loopback ports with ``PREDICT_PROBA=true``, sends the transformer's requests
(``serving.stock``) and, to show why they are needed, our predictor's own request shapes,
and writes everything with the in-process probabilities to
``tests/fixtures/kserve_sklearnserver.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "tests" / "fixtures" / "kserve_sklearnserver.json"
ROWS = 3


def kserve_commit(checkout: Path, given: str | None) -> str:
    if given:
        return given
    marker = checkout / "COMMIT"
    if marker.is_file():
        return marker.read_text().strip()
    return subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def start_stock_server(
    checkout: Path, storage_lib: Path, model_dir: Path, name: str, work: Path
) -> tuple[subprocess.Popen, str]:
    from esteira.net import free_port

    http, grpc = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(checkout / "python" / "sklearnserver"), str(storage_lib)]
        ),
        "PREDICT_PROBA": "true",
    }
    log = (work / "sklearnserver.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sklearnserver", "--model_name", name, "--model_dir",
         str(model_dir), "--http_port", str(http), "--grpc_port", str(grpc)],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit((work / "sklearnserver.log").read_text()[-3000:])
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("sklearnserver did not become ready within 300 s")


def exchange(url: str, path: str, request: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{url}{path}", json=request, timeout=30)
    try:
        body: Any = answer.json()
    except ValueError:
        body = answer.text
    return {"path": path, "request": request, "status": answer.status_code, "response": body}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kserve", type=Path, required=True, help="KServe checkout (outside)")
    parser.add_argument("--storage-lib", type=Path, required=True, help="dir with kserve_storage")
    parser.add_argument("--commit", help="KServe commit (default: read from the checkout)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    checkout = args.kserve.resolve()
    if checkout == ROOT or ROOT in checkout.parents:
        raise SystemExit("--kserve: must be outside this repository")

    import importlib.metadata

    import pandas as pd
    import sklearn

    from esteira.registry import MODEL_FILE, Registry
    from esteira.storage import LocalStorage
    from serving.stock import stock_request
    from serving.transformer import predictor_body
    from testkit.serving import MODEL_NAME, build_world

    with tempfile.TemporaryDirectory(prefix="stock-fixtures-") as tmp:
        work = Path(tmp)
        world = build_world(work / "world")
        registry = Registry(LocalStorage(world.settings.storage.root), MODEL_NAME)
        models = work / "mnt" / "models"  # what the storage initializer downloads
        models.mkdir(parents=True)
        for name in (MODEL_FILE, "metadata.json", "reference.json"):
            (models / name).write_bytes(registry.read_file(world.version, name))
        names = world.feature_names
        rows = world.rows(ROWS)
        features = {n: [row[n] for row in rows] for n in names}
        frame = pd.DataFrame(rows, columns=names).astype(world.metadata["feature_types"])
        expected = world.model.predict_proba(frame)[:, 1].tolist()
        ids = list(range(1, ROWS + 1))
        stamp = "2026-11-29T12:00:00+00:00"
        v1_path = f"/v1/models/{MODEL_NAME}:predict"
        v2_path = f"/v2/models/{MODEL_NAME}/infer"
        proc, url = start_stock_server(checkout, args.storage_lib, models, MODEL_NAME, work)
        try:
            cases = {
                "v1": exchange(url, v1_path, stock_request("v1", names, features)),
                "v2": exchange(url, v2_path, stock_request("v2", names, features)),
                # our predictor's own shapes, which the stock server refuses
                "v1_esteira": exchange(
                    url, v1_path, predictor_body("v1", names, features, ids, stamp)
                ),
                "v2_esteira": exchange(
                    url, v2_path, predictor_body("v2", names, features, ids, stamp)
                ),
                "v1_bare_objects": exchange(url, v1_path, {"instances": rows}),
            }
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    record = {
        "recorded_with": "tools/record_stock_fixtures.py",
        "kserve_commit": kserve_commit(checkout, args.commit),
        "kserve_source": "https://github.com/kserve/kserve/tree/<commit>/python/sklearnserver",
        "kserve_version": importlib.metadata.version("kserve"),
        "kserve_storage_version": importlib.metadata.version("kserve-storage")
        if _has_dist("kserve-storage")
        else _storage_version(args.storage_lib),
        "scikit_learn_version": sklearn.__version__,
        "env": {"PREDICT_PROBA": "true"},
        "model_name": MODEL_NAME,
        "feature_names": names,
        "decision_threshold": float(world.metadata.get("decision_threshold", 0.5)),
        "features": features,
        "expected_probabilities": expected,
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
    for key, case in cases.items():
        print(f"{key}: HTTP {case['status']}")
    print(f"wrote {args.out}")
    return 0


def _has_dist(name: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _storage_version(lib: Path) -> str:
    found = sorted(lib.glob("kserve_storage-*.dist-info"))
    return (
        found[-1].name.removeprefix("kserve_storage-").removesuffix(".dist-info") if found else ""
    )


if __name__ == "__main__":
    sys.exit(main())
