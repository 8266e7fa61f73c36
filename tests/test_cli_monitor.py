"""What `esteira monitor` prints about live performance: the figures, not the step's status."""

from esteira_cli.commands.monitor import _judgement


def test_judgement_names_each_metric_live_against_recorded() -> None:
    perf = {
        "status": "ok",
        "labelled_rows": 120,
        "comparison": {
            "wape": {"live": 0.53, "recorded": 0.433, "degraded": True},
            "mae": {"live": 3.0, "recorded": 3.1, "degraded": False},
        },
    }
    line = _judgement(perf)
    assert (
        line
        == "120 labelled rows; wape 0.530 vs recorded 0.433 (worse); mae 3.000 vs recorded 3.100"
    )


def test_judgement_says_when_nothing_was_judged() -> None:
    assert _judgement({"status": "no_labels"}) == "live performance not judged: no_labels"
