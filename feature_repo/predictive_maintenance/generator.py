"""A seeded generator of fleet telemetry for predictive maintenance.

One row per machine and hour: static attributes (``model``, ``age``), four
sensors (``volt``, ``rotate``, ``pressure``, ``vibration``), the errors logged in
that hour, whether a component was replaced (``maintenance``) and whether the
machine failed (``failure``).

What makes the signal learnable but not trivial:

* each failure is preceded by a gradual degradation of one component (one
  sensor ramps over 1 to 5 days, with a random severity, so some failures are
  nearly silent);
* errors become more frequent while a component degrades;
* some degradations never end in a failure: maintenance catches them (false alarms);
* old machines and some models fail more often.

``period="drifted"`` adds what a real fleet shows after a while: a recalibrated
voltage sensor (an offset) and a new machine model entering the fleet.
``period="stable"`` is the same process, later in time with another seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MODELS = ("model1", "model2", "model3", "model4")
MODEL_SHARE = (0.2, 0.3, 0.3, 0.2)
MODEL_RISK = {"model1": 0.8, "model2": 1.0, "model3": 1.1, "model4": 1.3, "model5": 1.0}
SENSORS = ("volt", "rotate", "pressure", "vibration")
BASELINE = {
    "volt": (170.0, 15.0),
    "rotate": (450.0, 50.0),
    "pressure": (100.0, 10.0),
    "vibration": (40.0, 5.0),
}
# how far each failing component pushes its sensor at full degradation (in baseline units)
DEGRADATION = {"volt": 30.0, "rotate": -110.0, "pressure": 22.0, "vibration": 11.0}
COLUMNS = [
    "timestamp",
    "machine_id",
    "model",
    "age",
    *SENSORS,
    "error_count",
    "maintenance",
    "failure",
]


@dataclass(frozen=True)
class FleetSpec:
    machines: int = 100
    days: int = 365
    start: str = "2025-01-01"
    seed: int = 42
    period: str = "normal"  # normal | stable | drifted
    failures_per_year: float = 6.0
    false_alarms_per_year: float = 3.0


def _event_hours(rng: np.random.Generator, hours: int, per_year: float, min_gap: int) -> list[int]:
    """Poisson arrivals with a minimum gap between events, none in the first week of data."""
    events, t = [], 168 - min_gap
    while True:
        t += min_gap + int(rng.exponential(8760 / max(per_year, 1e-9)))
        if t >= hours:
            return events
        events.append(t)


def _ramp(hours: int, end: int, length: int) -> np.ndarray:
    """0 before ``end - length``, rising quadratically to 1 at ``end``, 0 after."""
    t = np.arange(hours)
    progress = np.clip((t - (end - length)) / length, 0.0, 1.0)
    progress[t > end] = 0.0
    return progress**2


def _fleet(seed: int, machines: int) -> list[tuple[str, int]]:
    """(model, age) per machine: fixed by the seed alone, so every period sees the same fleet."""
    rng = np.random.default_rng([seed, 0])
    return [
        (str(rng.choice(MODELS, p=MODEL_SHARE)), int(rng.integers(0, 21))) for _ in range(machines)
    ]


def _machine(
    rng: np.random.Generator,
    machine_id: int,
    attributes: tuple[str, int],
    hours: int,
    spec: FleetSpec,
    drifted: bool,
) -> dict:
    model, age = attributes
    if drifted and rng.random() < 0.25:
        model = "model5"  # replaced by a new model entering the fleet
    risk = MODEL_RISK[model] * (0.7 + age / 25)
    offset = {s: rng.normal(0, sd * 0.15) for s, (_, sd) in BASELINE.items()}
    sensors = {s: rng.normal(mu + offset[s], sd, hours) for s, (mu, sd) in BASELINE.items()}
    if model == "model5":
        sensors["rotate"] += 40.0
    if drifted:
        sensors["volt"] += 12.0  # recalibrated voltage sensors

    failure = np.zeros(hours, dtype=np.int8)
    maintenance = np.zeros(hours, dtype=np.int8)
    stress = np.zeros(hours)
    failures = _event_hours(rng, hours, spec.failures_per_year * risk, min_gap=240)
    alarms = _event_hours(rng, hours, spec.false_alarms_per_year, min_gap=240)
    for hour, fails in [(h, True) for h in failures] + [(h, False) for h in alarms]:
        component = SENSORS[rng.integers(len(SENSORS))]
        ramp = _ramp(hours, hour, int(rng.integers(24, 121))) * rng.uniform(0.25, 1.4)
        sensors[component] += DEGRADATION[component] * ramp
        stress = np.maximum(stress, ramp)
        maintenance[hour] = 1  # a failure is repaired, a false alarm is caught by maintenance
        if fails:
            failure[hour] = 1
    for hour in range(int(rng.integers(24, 720)), hours, int(rng.integers(720, 1440))):
        maintenance[hour] = 1  # scheduled maintenance
    error_count = rng.poisson(0.004 + 0.12 * stress).astype(np.int16)
    return {
        "machine_id": np.full(hours, machine_id, dtype=np.int64),
        "model": np.full(hours, model, dtype=object),
        "age": np.full(hours, age, dtype=np.int64),
        **{s: np.round(v, 3) for s, v in sensors.items()},
        "error_count": error_count,
        "maintenance": maintenance,
        "failure": failure,
    }


def generate_fleet(
    machines: int = 100,
    days: int = 365,
    start: str = "2025-01-01",
    seed: int = 42,
    period: str = "normal",
) -> pd.DataFrame:
    """Hourly telemetry for ``machines`` machines over ``days`` days, fully determined by ``seed``."""
    if period not in ("normal", "stable", "drifted"):
        raise ValueError(f"period must be normal, stable or drifted, got {period!r}")
    spec = FleetSpec(machines=machines, days=days, start=start, seed=seed, period=period)
    hours = days * 24
    first = pd.Timestamp(start, tz="UTC")
    # the time series depend on the seed and the period's start: a later period is new data
    rng = np.random.default_rng([seed, 1, int(first.timestamp()) // 3600])
    stamps = pd.date_range(first, periods=hours, freq="h")
    fleet = _fleet(seed, machines)
    drifted = period == "drifted"
    parts = [_machine(rng, m, fleet[m - 1], hours, spec, drifted) for m in range(1, machines + 1)]
    frame = pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    frame.insert(0, "timestamp", np.tile(stamps, machines))
    frame["model"] = frame["model"].astype("string")
    return frame[COLUMNS]


# what `esteira data generate` and `make run` call (esteira/usecase.py)
generate = generate_fleet
