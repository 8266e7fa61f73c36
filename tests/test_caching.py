"""kfp.local caching by the task rule, on the head of the training pipeline (its real steps).

resolve-settings -> fingerprint (never cached) -> ingest(content_hash) -> validate, run three
times in one output root on a small fleet: the second identical run takes resolve-settings,
ingest and validate from the cache; after the source file's content changes at the same
path, fingerprint gives a new hash and nothing from ingest on is served from cache.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from pathlib import Path

import pytest
from kfp import compiler, dsl

from esteira.config import Settings
from esteira.data import write_fleet
from esteira_cli.local_run import run_pipeline
from testkit.pipeline import generate_fleet, small_workspace

pytestmark = pytest.mark.slow


def _head_pipeline(settings: Settings):
    from components.fingerprint.component import fingerprint
    from components.ingest.component import ingest
    from components.resolve_settings.component import resolve_settings
    from components.resolve_settings.logic import parameters_from
    from components.validate.component import validate
    from pipelines.common import default_config, with_task_settings

    defaults, form = default_config(settings), parameters_from(settings)

    @dsl.pipeline(name="training-head")
    def head(config: str = ""):
        def step(task):
            return with_task_settings(task, settings)

        resolved = step(resolve_settings(defaults=defaults, config=config, **vars(form)))
        source = step(fingerprint(config=resolved.output))
        ingested = step(ingest(config=resolved.output, content_hash=source.output))
        step(validate(config=resolved.output, dataset=ingested.outputs["dataset"]))

    return head


def test_identical_runs_reuse_the_cache_and_new_content_never_does(tmp_path: Path) -> None:
    settings = small_workspace(tmp_path, machines=5, days=10, validation={"min_rows": 10})
    path = tmp_path / "head.yaml"
    compiler.Compiler().compile(_head_pipeline(settings), package_path=str(path))

    def run():
        done = run_pipeline(
            "training-head", settings, root=tmp_path / "outputs", pipeline_yaml=path
        )
        assert done.status == "ok", done.error
        return done

    first, second = run(), run()
    assert first.cached == []
    assert second.cached == ["ingest", "resolve-settings", "validate"]
    assert "fingerprint" in second.step_status  # ran again: it reads the source
    assert second.outputs["ingest"] == first.outputs["ingest"]  # the cached outputs are reported
    before = first.outputs["fingerprint"]["parameters"]["Output"]

    source = Path(settings.data.source_uri)
    write_fleet(generate_fleet(machines=5, days=10, seed=7), str(source))  # same path
    third = run()

    assert third.cached == ["resolve-settings"]  # nothing from ingest on
    after = third.outputs["fingerprint"]["parameters"]["Output"]
    assert after != before
    assert third.outputs["ingest"]["parameters"]["Output"] == after
    assert third.outputs["ingest"]["artifacts"]["dataset"]["uri"].startswith(third.run_dir)
