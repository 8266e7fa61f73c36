"""Serving request-time text: one-row latency of the sentiment analysis model.

``run(out_dir)`` builds a small sentiment world under ``out_dir`` (the use case's generated
reviews, features materialized in SQLite, the text pipeline trained and registered, as
the tests do), starts our predictor and transformer (one worker each, OMP_NUM_THREADS=1)
and times single-row requests sent one after another on one keep-alive connection
(:class:`bench.serving._Poster`):

* ``in_process``: the Pipeline's ``predict_proba`` on a one-row DataFrame (word and
  character TF-IDF, then logistic regression): the floor;
* ``predictor_v1`` / ``predictor_v2``: our predictor with the text as a JSON string / BYTES;
* ``chain``: transformer -> Feast online lookup (the product's figures; the text passes
  through the on-demand view) -> predictor, V1 in.

Measured, never asserted.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.serving import ROOT, _Poster, _time, _wait, chain_children
from esteira.net import free_port

REQUESTS = 1000
WARMUP = 100
TEXT = "The battery is not great, but the screen is lovely. Muito bom!"


def run(out_dir: str | Path) -> dict[str, Any]:
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from testkit.sentiment import generate, sentiment_world

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="text-", dir=out))
    raw = generate(products=60, days=180, reviews_per_day=0.3, seed=4)
    world = sentiment_world(root, raw, features={"max_dropped_share": 0.2})
    name = world["settings"].model.name
    features = world["features"]
    row = {**world["frame"][features].iloc[-1].to_dict(), "review": TEXT}
    product = int(world["frame"]["product_id"].iloc[-1])
    results: dict[str, Any] = {"requests": REQUESTS, "warmup": WARMUP, "model": name}
    one = pd.DataFrame([row], columns=features)
    results["in_process"] = _time(lambda: world["model"].predict_proba(one), REQUESTS, WARMUP)

    ports = {"predictor": free_port(), "grpc": free_port(), "transformer": free_port(span=2)}
    config = ["--config", str(world["config"])]
    children = chain_children(config, ports, ports["transformer"] + 1, root)
    try:
        for key in ("predictor", "transformer"):
            _wait(f"http://127.0.0.1:{ports[key]}/v2/health/ready", children[key])
        kinds = {c: str(world["frame"][c].dtype) for c in features}
        v2_inputs = [
            {"name": c, "shape": [1], "data": [row[c]],
             "datatype": "BYTES" if kinds[c] in ("object", "string", "category") else "FP64"}
            for c in features
        ]  # fmt: skip
        paths = {
            "predictor_v1": (ports["predictor"], f"/v1/models/{name}:predict",
                             {"instances": [row], "parameters": {"probabilities": True}}),
            "predictor_v2": (ports["predictor"], f"/v2/models/{name}/infer",
                             {"inputs": v2_inputs}),
            "chain": (ports["transformer"], f"/v1/models/{name}:predict",
                      {"instances": [{"product_id": product, "review_text": TEXT}]}),
        }  # fmt: skip
        for key, (port, path, body) in paths.items():
            with _Poster(port, path, body) as call:
                results[key] = _time(call, REQUESTS, WARMUP)
    finally:
        for child in children.values():
            child.stop()
    return results
