"""The one typed configuration.

Precedence, lowest first: defaults (the local mode works with no file), a YAML
file (``--config``), environment variables ``ESTEIRA_<SECTION>__<KEY>``.
Credentials are never configuration: storage reads them from the environment
(``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, as MinIO, s3fs and KServe do).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from esteira.errors import ConfigError
from esteira.search import SearchSettings

ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "ESTEIRA_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSettings(_Section):
    source_uri: str = Field(
        "data/fleet.parquet",
        description="CSV or Parquet: path, http(s)://, s3:// or dvc://<repo>?path=...&rev=...",
    )
    machines: int = Field(100, ge=1, le=100_000)
    days: int = Field(365, ge=3, le=3650)
    start: str = "2025-01-01"
    seed: int = 42
    period: Literal["normal", "stable", "drifted"] = "normal"
    generator: dict[str, Any] = Field(
        default_factory=dict,
        description="the use case's own data-generator parameters (its usecase.yaml sets them)",
    )


class StorageSettings(_Section):
    kind: Literal["local", "s3"] = "local"
    root: str = Field("dist/store", description="local mode: directory that holds everything")
    endpoint: str = Field("", description="s3 mode: host:port of MinIO/S3, no scheme")
    secure: bool = Field(False, description="s3 mode: use https")
    bucket: str = "esteira"
    prefix: str = ""
    region: str = "us-east-1"
    retries: int = Field(4, ge=0, le=10)
    timeout_seconds: float = Field(
        20.0, gt=0, le=600, description="s3 mode: how long to wait for each answer"
    )

    @model_validator(mode="after")
    def _s3_needs_endpoint(self) -> StorageSettings:
        if self.kind == "s3" and not self.endpoint:
            raise ValueError("storage.endpoint is required when storage.kind is 's3' (host:port)")
        if "://" in self.endpoint:
            raise ValueError("storage.endpoint is host:port without a scheme; set storage.secure")
        return self


class ValidationSettings(_Section):
    min_rows: int = Field(100, ge=1)
    max_null_ratio: float = Field(0.01, ge=0, le=1)
    future_tolerance_hours: float = Field(1.0, ge=0)


class SparkSettings(_Section):
    """The Spark feature engine (``features.engine: spark``, esteira/spark_features.py).

    ``run_in: task`` (the default): Spark runs in local mode inside the task (``master``,
    bounded ``driver_memory``). ``run_in: spark_application``: on a cluster the heavy steps
    (the feature tables, the point-in-time training set and batch prediction's retrieval)
    are SparkApplications of the Kubeflow Spark Operator (esteira/spark_submit.py::run_step)
    in the Spark image (``image.spark_reference``) with these resources and ``packages``;
    the task stages its input in S3, submits, waits and copies the output back.
    S3 credentials come from the ``esteira-s3`` Secret, never from here.
    """

    master: str = Field(
        "local[2]",
        description="local[N]: Spark inside the task; cluster: inside a SparkApplication "
        "(the Spark Operator sets the master)",
    )
    driver_memory: str = Field("1g", pattern=r"^[0-9]+[kmgt]$")
    driver_cores: int = Field(1, ge=1, le=64)
    executor_memory: str = Field("2g", pattern=r"^[0-9]+[kmgt]$")
    executor_cores: int = Field(1, ge=1, le=64)
    executor_instances: int = Field(2, ge=1, le=1000)
    shuffle_partitions: int = Field(4, ge=1, le=100_000)
    service_account: str = Field("esteira-spark", description="the SparkApplication's driver SA")
    run_in: Literal["task", "spark_application"] = Field(
        "task",
        description="where the Spark steps (compute-features, build-training-set, batch "
        "prediction's retrieval) run: task = Spark in local mode inside the KFP task; "
        "spark_application = the task submits a SparkApplication (esteira/spark_submit.py) "
        "and waits for it (needs storage.kind and features.offline_store 's3')",
    )
    packages: list[str] = Field(
        default_factory=lambda: ["org.apache.hadoop:hadoop-aws:3.4.1"],
        description="Maven coordinates for the SparkApplication's spec.deps.packages: "
        "s3a:// needs hadoop-aws of pyspark's Hadoop (3.4.1 for pyspark 4.0; it pulls the AWS "
        "SDK bundle); [] when the jars are baked into the Spark image (SPARK_EXTRA_JARS)",
    )
    timeout_seconds: int = Field(
        3600, ge=1, description="how long a task waits for its SparkApplication"
    )
    poll_seconds: float = Field(
        5.0, gt=0, le=300, description="how often a task reads its SparkApplication's state"
    )


class FeatureSettings(_Section):
    engine: Literal["pandas", "spark"] = Field(
        "pandas", description="what computes the feature tables and the training set"
    )
    spark: SparkSettings = Field(default_factory=SparkSettings)
    repo_path: str = "feature_repo"
    registry_path: str = Field(
        "",
        description="Feast's registry file; empty: the repo's own (data/registry.db, shared by "
        "every step on one machine). On a cluster each pod has its own filesystem: set a "
        "writable path (the manifests' esteira-config: /tmp/feast/registry.db) and a pod "
        "without a registry there applies the definitions in its image first "
        "(esteira/feast_store.py::feature_store)",
    )
    feature_service: str = "machine_failure"
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_connection: str = "127.0.0.1:6379"
    offline_store: Literal["local", "s3"] = "local"
    label_horizon_hours: int = Field(24, ge=1)
    sample_every_hours: int = Field(
        6, ge=1, description="one training row per machine every N hours"
    )
    max_dropped_share: float = Field(0.05, ge=0, le=1, description="rows Feast may drop for TTL")


ModelFamily = Literal["gradient_boosting", "random_forest", "logistic_regression"]


# ---- the alert threshold (issue 19) ---------------------------------------------------------
ThresholdPolicy = Literal["fixed", "max_f_beta", "min_cost", "precision_at_least"]


class ThresholdSettings(_Section):
    """How a classifier's ``decision_threshold`` is chosen (``esteira/thresholds.py``).

    The class is ``probability >= decision_threshold``. Except for ``fixed``, the threshold
    is chosen on predictions the model did not train on: a time-ordered validation slice
    at the end of the training window (``validation_fraction`` of it), never the hold-out.
    One flat section, so a use case's config or a run's ``config`` can change one key.
    """

    policy: ThresholdPolicy = Field(
        "min_cost",
        description="fixed: `decision_threshold`; max_f_beta: best F-beta (`beta`); min_cost: "
        "lowest expected cost (`fn_cost`, `fp_cost`); precision_at_least: best recall with "
        "precision >= `min_precision`",
    )
    decision_threshold: float = Field(0.5, gt=0, lt=1, description="policy fixed: the value")
    beta: float = Field(1.0, gt=0, le=100, description="policy max_f_beta: recall weighs beta x")
    # predictive maintenance: a missed failure costs 20 inspections (a false alarm is one)
    fn_cost: float = Field(20.0, gt=0, description="cost of a missed positive (false negative)")
    fp_cost: float = Field(1.0, gt=0, description="cost of a false alarm (false positive)")
    min_precision: float = Field(
        0.5, gt=0, le=1, description="policy precision_at_least: the precision floor"
    )
    validation_fraction: float = Field(
        0.2, gt=0, lt=0.9, description="share of the training window the threshold is chosen on"
    )


class ModelSettings(_Section):
    name: str = Field("machine-failure", pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    task: Literal["classification", "regression"] = "classification"
    family: ModelFamily = "gradient_boosting"
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    random_state: int = 42
    test_fraction: float = Field(0.2, gt=0, lt=0.9)
    threshold: ThresholdSettings = Field(
        default_factory=ThresholdSettings,
        description="how the classifier's decision_threshold is chosen",
    )
    search: SearchSettings = Field(default_factory=SearchSettings)

    @model_validator(mode="after")
    def _hyperparameters_fit_the_family(self) -> ModelSettings:
        # checked when the config loads, not 40 s into a run (sklearn is imported only if set);
        # the ConfigError is not a ValueError, so pydantic lets it through as it is
        from esteira.model_families import check_hyperparameters

        check_hyperparameters(self.task, self.family, self.hyperparameters)
        return self

    @model_validator(mode="after")
    def _search_fits_the_task(self) -> ModelSettings:
        from esteira.search import check_search

        check_search(self)
        return self


class GateSettings(_Section):
    thresholds: dict[str, float] = Field(
        default_factory=lambda: {"roc_auc": 0.8},
        description="metric -> minimum (or maximum for rmse/mae)",
    )
    compare_metric: str = "roc_auc"
    direction: Literal["maximize", "minimize"] = "maximize"
    min_improvement: float = Field(0.0, ge=0)


class EvaluationSettings(_Section):
    """Regression: the rolling-origin backtest and what the report breaks errors down by."""

    backtest_folds: int = Field(3, ge=1, le=20, description="rolling origins over the hold-out")
    segments: list[str] = Field(
        default_factory=list, description="hold-out columns to break the error down by"
    )
    series: int = Field(3, ge=0, le=20, description="forecast-vs-actual series in the report")


class CardSettings(_Section):
    """The model card every registered version gets (``esteira/model_card.py``)."""

    intended_use: str = Field("", description="what the model is for (the use case sets it)")
    limitations: list[str] = Field(default_factory=list, description="known limits, one a line")
    slice_column: str = Field(
        "", description="a categorical hold-out column the card breaks metrics down by"
    )
    bootstrap: int = Field(200, ge=20, le=5000, description="bootstrap resamples per interval")
    confidence: float = Field(0.95, gt=0.5, lt=1)
    importance_repeats: int = Field(3, ge=1, le=50, description="permutation importance repeats")
    importance_rows: int = Field(2000, ge=50, description="hold-out rows importance is measured on")
    calibration_bins: int = Field(10, ge=2, le=50)


class RetrainSettings(_Section):
    """How a retrain started by monitoring is judged (``esteira/retrain_policy.py``).

    ``policy: relative``: the retrained model passes when it is no worse than the current
    champion on the same recent hold-out by more than ``max_drop`` (``gate.compare_metric``,
    ``gate.direction``), and at least ``min_new_labels`` newly labelled rows came in;
    ``absolute``: the gate's thresholds, as for any training run. ``trigger`` and
    ``new_labels`` are set by the monitoring pipeline's ``retrain`` step, never by hand.
    """

    policy: Literal["relative", "absolute"] = "relative"
    max_drop: float = Field(0.0, ge=0, description="how much worse than the champion may pass")
    min_new_labels: int = Field(100, ge=0)
    trigger: str = Field("", description="set by the retrain step: why monitoring retrained")
    new_labels: int = Field(0, ge=0, description="set by the retrain step")


class ImageSettings(_Section):
    registry: str = "ghcr.io/esteira"
    name: str = "esteira"
    tag: str = "0.1.0"
    # FROM of both images; pulled when a registry answers, else built from Debian packages
    # and tagged locally under this name (docker/base.sh)
    base: str = "python:3.11.11-slim-bookworm"

    @property
    def reference(self) -> str:
        """The component image (every KFP task runs in it)."""
        return f"{self.registry.rstrip('/')}/{self.name}:{self.tag}"

    @property
    def serving_reference(self) -> str:
        """The predictor/transformer image (`python -m serving`)."""
        return f"{self.registry.rstrip('/')}/{self.name}-serving:{self.tag}"

    @property
    def spark_reference(self) -> str:
        """The Spark image (docker/spark.Dockerfile): Java, pyspark and esteira."""
        return f"{self.registry.rstrip('/')}/{self.name}-spark:{self.tag}"


class KServeSettings(_Section):
    namespace: str = Field("esteira", pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    service_account: str = "esteira-models"
    protocol: Literal["v1", "v2"] = "v2"
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(3, ge=1)
    canary_traffic_percent: int | None = Field(None, ge=0, le=100)
    transformer: bool = False
    runtime: Literal["esteira-sklearn", "kserve-sklearnserver"] = Field(
        "esteira-sklearn",
        description="ServingRuntime the predictor pins: ours (the serving image) or KServe's "
        "stock sklearn server (predictor-only, PREDICT_PROBA set, DataFrame-shaped requests)",
    )
    cpu: str = "500m"
    memory: str = "1Gi"
    ready_timeout_seconds: int = Field(300, ge=1)
    deploy: bool = Field(
        True, description="deploy a promoted version (the training pipeline's `deploy` parameter)"
    )


_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"


class TaskResources(_Section):
    """A KFP task's container requests and limits (Kubernetes quantities)."""

    cpu_request: str = Field("250m", pattern=_QUANTITY)
    cpu_limit: str = Field("1", pattern=_QUANTITY)
    memory_request: str = Field("512Mi", pattern=_QUANTITY)
    memory_limit: str = Field("2Gi", pattern=_QUANTITY)


def _default_task_resources() -> dict[str, TaskResources]:
    heavy = TaskResources(cpu_request="1", cpu_limit="2", memory_request="2Gi", memory_limit="4Gi")
    light = TaskResources(cpu_request="100m", cpu_limit="500m", memory_request="256Mi")
    return {
        "build-training-set": heavy,
        "compute-features": heavy,
        "train": heavy,
        "batch-features": heavy,
        "resolve-settings": light,
        "retrain-decision": light,
        "fingerprint": light,
    }


class KFPSettings(_Section):
    host: str = "http://127.0.0.1:8888"
    experiment: str = "esteira"
    namespace: str = Field(
        "", description="multi-user Kubeflow: the profile namespace of pipelines and experiments"
    )
    secret_name: str = Field("esteira-s3", description="Kubernetes Secret with the S3 credentials")
    resources: TaskResources = Field(
        default_factory=TaskResources, description="every task's requests and limits"
    )
    task_resources: dict[str, TaskResources] = Field(
        default_factory=_default_task_resources,
        description="per task name (e.g. `train`), replacing `resources` for that task",
    )
    retries: int = Field(3, ge=0, le=10, description="retries of tasks that write storage")
    retry_backoff_seconds: int = Field(5, ge=0, le=600, description="first retry's delay")
    retry_backoff_max_seconds: int = Field(60, ge=0, le=3600)

    def resources_for(self, task: str) -> TaskResources:
        return self.task_resources.get(task, self.resources)


class ServingSettings(_Section):
    transformer_port: int = Field(8080, ge=1, le=65535)
    predictor_port: int = Field(8085, ge=1, le=65535)
    grpc_port: int = Field(8086, ge=1, le=65535)
    supervisor_port: int = Field(8089, ge=0, le=65535)  # `esteira serve`'s /metrics; 0: none
    predictor_protocol: Literal["v1", "v2"] = "v1"  # the hop V1 takes the fast lane
    max_batch: int = Field(1000, ge=1)
    log_flush_rows: int = Field(500, ge=1)
    log_flush_seconds: float = Field(2.0, gt=0)
    timeout_seconds: float = Field(5.0, gt=0)
    max_text_chars: int = Field(
        5000, ge=1, le=1_000_000, description="longest request-time text accepted (characters)"
    )
    allow_model_repository: bool = Field(
        False, description="KServe's model load/unload endpoints (REST and gRPC); 403 when off"
    )


class MonitoringSettings(_Section):
    psi_moderate: float = Field(0.1, gt=0)
    psi_significant: float = Field(0.25, gt=0)
    p_value: float = Field(0.05, gt=0, lt=1)
    drift_share: float = Field(
        0.3, gt=0, le=1, description="share of drifting features = dataset drift"
    )
    performance_tolerance: float = Field(0.05, ge=0, le=1)


class Settings(BaseSettings):
    """Everything esteira can be told. ``Settings()`` is the local mode."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    use_case: str = Field(
        "",
        description="feature_repo/<use_case>/ (or its model's name); empty: the default use case",
    )
    data: DataSettings = Field(default_factory=DataSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    card: CardSettings = Field(default_factory=CardSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    image: ImageSettings = Field(default_factory=ImageSettings)
    kserve: KServeSettings = Field(default_factory=KServeSettings)
    kfp: KFPSettings = Field(default_factory=KFPSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)

    @model_validator(mode="before")
    @classmethod
    def _use_case_settings_underneath(cls, values: Any) -> Any:
        """The use case's settings (its usecase.yaml) under whatever was given."""
        if not isinstance(values, dict):
            return values
        from esteira import usecase

        try:
            case = usecase.load(values.get("use_case") or None)
        except usecase.UseCaseError as exc:
            # not a ValueError: pydantic lets it through as the one line it is
            raise ConfigError(
                "use_case",
                str(exc),
                "name a directory under feature_repo/ (or its model) with --usecase, "
                "ESTEIRA_USE_CASE or `use_case:` in the config",
            ) from None
        merged = usecase.merge(case.settings, values)
        merged["use_case"] = case.name
        return merged

    @field_validator("gate")
    @classmethod
    def _known_gate_metrics(cls, gate: GateSettings) -> GateSettings:
        unknown = set(gate.thresholds) | {gate.compare_metric}
        unknown -= set(KNOWN_METRICS)
        if unknown:
            raise ValueError(
                f"unknown metric(s) {sorted(unknown)}; allowed: {sorted(KNOWN_METRICS)}"
            )
        if gate.compare_metric == "expected_cost" and gate.direction != "minimize":
            raise ValueError(
                "compare_metric expected_cost is lower-is-better: set direction minimize"
            )
        return gate

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # env wins over the YAML file, which load_settings passes as init values
        return env_settings, init_settings

    # ---- helpers used across components -------------------------------------------------
    def resolved(self) -> Settings:
        """A copy whose local paths are absolute, so subprocesses agree on them."""
        data = self.model_dump()
        data["storage"]["root"] = str(resolve_path(self.storage.root))
        data["features"]["repo_path"] = str(resolve_path(self.features.repo_path))
        if "://" not in self.data.source_uri:
            data["data"]["source_uri"] = str(resolve_path(self.data.source_uri))
        return Settings.model_validate(data)


KNOWN_METRICS = {
    "roc_auc": "maximize",
    "pr_auc": "maximize",
    "f1": "maximize",
    "precision": "maximize",
    "recall": "maximize",
    "accuracy": "maximize",
    "macro_f1": "maximize",  # F1 of each class, averaged: both classes count alike
    "rmse": "minimize",
    "mae": "minimize",
    "r2": "maximize",
    # classification: fn_cost x missed + fp_cost x false alarms per 1,000 hold-out rows
    # at the model's decision_threshold (model.threshold's costs)
    "expected_cost": "minimize",
    # regression against the seasonal-naive baseline (esteira/regression.py)
    "wape": "minimize",
    "mase": "minimize",
    "wape_improvement": "maximize",
    "backtest_wape": "minimize",
    "backtest_wape_improvement": "maximize",
}


def resolve_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (Path.cwd() / p).resolve()


def _known_keys(loc: tuple) -> list[str]:
    """The keys allowed beside the unknown key at ``loc`` (its parent's fields)."""
    model: Any = Settings
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return sorted(getattr(model, "model_fields", {}))


def _unknown_key_fix(loc: tuple) -> str:
    parent = ".".join(str(p) for p in loc[:-1])
    if tuple(loc) == ("model", "decision_threshold"):  # moved into model.threshold (issue 19)
        return (
            "it moved: set `model.threshold.policy: fixed` and `model.threshold.decision_threshold`"
        )
    known = _known_keys(loc)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{'.'.join([parent, close[0]]).lstrip('.')}`?"
    where = f"`{parent}`" if parent else "the top level"
    return f"remove it; keys allowed at {where}: {', '.join(known)}"


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(root)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key in {source}. Fix: {_unknown_key_fix(e['loc'])}")
            continue
        env = ENV_PREFIX + "__".join(str(p).upper() for p in e["loc"])
        got = "" if e["type"] == "missing" else f" (got {e.get('input')!r})"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{key}: {msg}{got}. Fix: set `{key}` in {source} or {env}")
    return "; ".join(lines)


def _yaml_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    """PyYAML's multi-line message as one line: file, line, column and what is wrong."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    what = f"{problem} ({context})" if context else problem
    return ConfigError("--config", f"{where}: not valid YAML: {what}", "fix the YAML at that line")


def load_settings(path: str | Path | None = None) -> Settings:
    """Defaults, then the YAML file, then ``ESTEIRA_*`` environment variables."""
    values: dict[str, Any] = {}
    source = "the YAML config"
    if path:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError("--config", f"file {p} does not exist", "pass a YAML file path")
        try:
            values = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise _yaml_error(p, exc) from None
        if not isinstance(values, dict):
            raise ConfigError("--config", f"{p} must hold a mapping of sections", "see README")
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError("config", _format_validation_error(exc, source)) from None


def settings_to_json(settings: Settings) -> str:
    """The pipelines' ``config`` parameter: non-secret settings as canonical JSON (stable bytes)."""
    return json.dumps(
        settings.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":")
    )


def settings_from_json(text: str) -> Settings:
    """Rebuild settings inside a component from the pipeline's ``config`` parameter."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            "config", f"the pipeline parameter is not JSON ({exc})", "pass the JSON settings"
        ) from None
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError("config", _format_validation_error(exc, "the pipeline config")) from None
