"""Pipeline versions and recurring runs on Kubeflow Pipelines (`esteira upload`, `esteira schedule`).

Two layers, so everything but the network is tested here:

- pure builders (``cron_6_fields``, ``pipeline_body``, ``version_upload``,
  ``recurring_run_body``, ``schedule_parameters``) return the ``kfp_server_api`` models or
  arguments that kfp 2.17's generated API sends as they are;
- ``KfpApi`` is the thin part: it sends them with the API objects of a ``kfp.Client``
  (which owns authentication) and turns any refusal into one line naming ``kfp.host``.

Credentials are never configuration: a bearer token comes from ``ESTEIRA_KFP_TOKEN``,
cookies (e.g. an ``authservice_session`` behind Dex/oauth2-proxy) from
``ESTEIRA_KFP_COOKIES``; without them kfp's own sources apply (``KF_PIPELINES_SA_TOKEN_PATH``
in a pod, the ``client_authentication_cookie`` of ``~/.config/kfp/context.json``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from esteira.config import Settings
from esteira.errors import ConfigError, EsteiraError

log = logging.getLogger(__name__)

TOKEN_ENV = "ESTEIRA_KFP_TOKEN"
COOKIES_ENV = "ESTEIRA_KFP_COOKIES"
DIGEST_PREFIX = "sha256:"
REQUEST_TIMEOUT = (5.0, 60.0)  # (connect, read) seconds, every API call


# ---- cron --------------------------------------------------------------------------------------
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?/,\-#LW]+$")


def cron_6_fields(expr: str) -> str:
    """KFP's cron (robfig/cron with seconds first) from the usual 5-field form.

    ``"0 6 * * *"`` (06:00 every day) becomes ``"0 0 6 * * *"``; a 6-field expression and
    a descriptor (``@daily``, ``@every 1h``) pass unchanged.
    """
    text = " ".join(expr.split())
    if text.startswith("@"):
        return text
    fields = text.split(" ") if text else []
    if len(fields) not in (5, 6) or not all(_CRON_FIELD.match(f) for f in fields):
        raise ConfigError(
            "--cron",
            f"{expr!r} is not a cron expression of 5 fields (minute hour day month weekday) "
            "or 6 (seconds first)",
            'write e.g. --cron "0 6 * * *" (06:00 UTC every day)',
        )
    return text if len(fields) == 6 else f"0 {text}"


# ---- compiled packages -------------------------------------------------------------------------
@dataclass(frozen=True)
class Package:
    """A compiled pipeline YAML: its KFP pipeline name, spec documents and content digest."""

    path: Path
    display_name: str
    description: str
    pipeline_spec: dict[str, Any]
    platform_spec: dict[str, Any] | None
    digest: str

    @property
    def inputs(self) -> dict[str, dict[str, Any]]:
        """The run form: root input parameters with ``parameterType`` and defaults."""
        return input_parameters(self.pipeline_spec)


def read_package(path: Path) -> Package:
    """Parse ``dist/pipelines/<name>.yaml`` as the KFP API will."""
    if not path.is_file():
        raise ConfigError(
            str(path), "no compiled pipeline there", "run `make compile` (or `esteira compile`)"
        )
    data = path.read_bytes()
    docs = [d for d in yaml.safe_load_all(data) if d]
    if not docs or "pipelineInfo" not in docs[0]:
        raise ConfigError(str(path), "not a compiled KFP pipeline", "run `make compile`")
    spec = docs[0]
    platform = next((d for d in docs[1:] if "platforms" in d), None)
    info = spec["pipelineInfo"]
    return Package(
        path=path,
        display_name=info["name"],
        description=info.get("description", ""),
        pipeline_spec=spec,
        platform_spec=platform,
        digest=DIGEST_PREFIX + hashlib.sha256(data).hexdigest(),
    )


def input_parameters(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Root input parameters of a pipeline spec (also in KFP's stored ``pipeline_spec`` form,
    ``{"pipeline_spec": ..., "platform_spec": ...}``)."""
    if "root" not in spec and isinstance(spec.get("pipeline_spec"), dict):
        spec = spec["pipeline_spec"]
    return dict(spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}))


def package_images(package: Package) -> set[str]:
    executors = package.pipeline_spec.get("deploymentSpec", {}).get("executors", {})
    return {e["container"]["image"] for e in executors.values() if "container" in e}


# ---- request builders --------------------------------------------------------------------------
def pipeline_body(package: Package, namespace: str = ""):
    """``POST /apis/v2beta1/pipelines``: the pipeline alone (versions are uploaded after)."""
    import kfp_server_api as api

    return api.V2beta1Pipeline(
        display_name=package.display_name,
        name=package.display_name,
        description=package.description,
        namespace=namespace or None,
    )


def version_upload(package: Package, pipeline_id: str, version: str) -> dict[str, Any]:
    """Keyword arguments of ``PipelineUploadServiceApi.upload_pipeline_version``
    (``POST /apis/v2beta1/pipelines/upload_version``, the YAML as ``uploadfile``).

    The description carries the content digest: that is how a second upload of the same
    version knows whether it is the same content."""
    return {
        "uploadfile": str(package.path),
        "name": version,
        "display_name": version,
        "pipelineid": pipeline_id,
        "description": f"esteira {version} {package.digest}",
    }


def _typed(name: str, value: Any, spec: dict[str, Any]) -> None:
    kind = spec.get("parameterType", "STRING")
    ok = {
        "STRING": isinstance(value, str),
        "NUMBER_DOUBLE": isinstance(value, int | float) and not isinstance(value, bool),
        "NUMBER_INTEGER": isinstance(value, int) and not isinstance(value, bool),
        "BOOLEAN": isinstance(value, bool),
        "STRUCT": isinstance(value, dict),
        "LIST": isinstance(value, list),
    }.get(kind, True)
    if not ok:
        raise ConfigError(
            f"--param {name}", f"{value!r} is not a {kind} (the pipeline's type)", "fix the value"
        )


def schedule_parameters(
    settings: Settings, inputs: dict[str, dict[str, Any]], overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The recurring run's parameters: from the configuration, then ``--param`` overrides,
    checked against the scheduled version's typed inputs (the manual run's form).

    From the configuration: the typed run parameters (``model_family``, ``gate_min``, ...:
    what ``resolve-settings`` reads) and ``labels_uri`` = ``data.source_uri`` (the raw
    telemetry whose events are the late labels)."""
    from components.resolve_settings.logic import parameters_from

    form = parameters_from(settings)
    from_config: dict[str, Any] = {
        "labels_uri": settings.data.source_uri,
        "model_family": form.model_family,
        "hyperparameters": form.hyperparameters,
        "gate_metric": form.gate_metric,
        "gate_min": form.gate_min,
        "min_improvement": form.min_improvement,
        "deploy": form.deploy,
        "use_case": form.use_case,
    }
    params = {k: v for k, v in from_config.items() if k in inputs}
    for key, value in (overrides or {}).items():
        if key not in inputs:
            raise ConfigError(
                f"--param {key}",
                "is not a parameter of the pipeline",
                f"use one of {', '.join(sorted(inputs))}",
            )
        params[key] = value
    for key, value in params.items():
        _typed(key, value, inputs[key])
    missing = [k for k, s in inputs.items() if k not in params and not s.get("isOptional", False)]
    if missing:
        raise ConfigError(
            f"--param {missing[0]}", "is required by the pipeline", f"pass --param {missing[0]}=..."
        )
    return params


def recurring_run_body(
    *,
    name: str,
    experiment_id: str,
    pipeline_id: str,
    version_id: str,
    cron: str,
    parameters: dict[str, Any],
    description: str = "",
    service_account: str = "",
):
    """``POST /apis/v2beta1/recurringruns``: ``cron`` is already 6-field; one run at a time
    (``max_concurrency`` 1, int64 as a JSON string), and no backfill of missed intervals."""
    import kfp_server_api as api

    return api.V2beta1RecurringRun(
        display_name=name,
        description=description or None,
        experiment_id=experiment_id,
        pipeline_version_reference=api.V2beta1PipelineVersionReference(
            pipeline_id=pipeline_id, pipeline_version_id=version_id
        ),
        runtime_config=api.V2beta1RuntimeConfig(parameters=parameters),
        trigger=api.V2beta1Trigger(cron_schedule=api.V2beta1CronSchedule(cron=cron)),
        max_concurrency="1",
        no_catchup=True,
        mode=api.RecurringRunMode.ENABLE,
        service_account=service_account or None,
    )


def name_filter(value: str) -> str:
    """KFP's filter (filter.proto) for ``display_name == value``, as ``kfp.Client`` builds it."""
    return json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": value}]}
    )


# ---- the thin part: sending ------------------------------------------------------------------
class KfpApi:
    """The generated KFP API behind a ``kfp.Client``, with errors as one line naming kfp.host."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        self.host = settings.kfp.host
        self.namespace = settings.kfp.namespace
        self.client = client if client is not None else connect(settings)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except Exception as exc:  # ApiException, urllib3 errors
            status = getattr(exc, "status", None)
            reason = f"HTTP {status}: {_api_message(exc)}" if status else type(exc).__name__
            fix = (
                "set ESTEIRA_KFP_TOKEN or ESTEIRA_KFP_COOKIES to credentials KFP accepts"
                if status in (401, 403)
                else "check kfp.host, kfp.namespace and the KFP API server's logs"
            )
            raise EsteiraError(
                "kfp.host", f"Kubeflow Pipelines at {self.host} refused to {what} ({reason})", fix
            ) from None

    # pipelines and versions
    def find_pipeline(self, display_name: str) -> Any | None:
        api = self.client._pipelines_api
        kwargs = {"namespace": self.namespace} if self.namespace else {}
        found = self._call(
            f"list pipelines named {display_name}",
            api.pipeline_service_list_pipelines,
            filter=name_filter(display_name),
            **kwargs,
        )
        return (found.pipelines or [None])[0]

    def create_pipeline(self, body: Any) -> Any:
        api = self.client._pipelines_api
        return self._call(
            f"create pipeline {body.display_name}", api.pipeline_service_create_pipeline, body
        )

    def find_version(self, pipeline_id: str, version: str) -> Any | None:
        api = self.client._pipelines_api
        found = self._call(
            f"list versions of pipeline {pipeline_id}",
            api.pipeline_service_list_pipeline_versions,
            pipeline_id,
            filter=name_filter(version),
        )
        return (found.pipeline_versions or [None])[0]

    def latest_version(self, pipeline_id: str) -> Any | None:
        api = self.client._pipelines_api
        found = self._call(
            f"list versions of pipeline {pipeline_id}",
            api.pipeline_service_list_pipeline_versions,
            pipeline_id,
            page_size=1,
            sort_by="created_at desc",
        )
        return (found.pipeline_versions or [None])[0]

    def get_version(self, pipeline_id: str, version_id: str) -> Any:
        api = self.client._pipelines_api
        return self._call(
            f"get version {version_id}",
            api.pipeline_service_get_pipeline_version,
            pipeline_id,
            version_id,
        )

    def upload_version(self, kwargs: dict[str, Any]) -> Any:
        args = dict(kwargs)
        uploadfile = args.pop("uploadfile")
        return self._call(
            f"upload version {args['name']}",
            self.client._upload_api.upload_pipeline_version,
            uploadfile,
            **args,
        )

    # experiments and recurring runs
    def experiment_id(self, name: str, create: bool = True) -> str | None:
        """The experiment's id; a missing one is created (``create``), else None."""
        import kfp_server_api as api

        exp_api = self.client._experiment_api
        kwargs = {"namespace": self.namespace} if self.namespace else {}
        found = self._call(
            f"list experiments named {name}",
            exp_api.experiment_service_list_experiments,
            filter=name_filter(name),
            **kwargs,
        )
        if found.experiments:
            return found.experiments[0].experiment_id
        if not create:
            return None
        body = api.V2beta1Experiment(display_name=name, namespace=self.namespace or None)
        created = self._call(
            f"create experiment {name}", exp_api.experiment_service_create_experiment, body
        )
        return created.experiment_id

    def recurring_runs(self, experiment_id: str, name: str | None = None) -> Iterator[Any]:
        rr_api = self.client._recurring_run_api
        token = ""
        for _ in range(1000):  # pages of 100; bounded whatever the server answers
            kwargs: dict[str, Any] = {"experiment_id": experiment_id, "page_size": 100}
            if name is not None:
                kwargs["filter"] = name_filter(name)
            if token:
                kwargs["page_token"] = token
            page = self._call(
                "list recurring runs", rr_api.recurring_run_service_list_recurring_runs, **kwargs
            )
            yield from page.recurring_runs or []
            token = page.next_page_token or ""
            if not token:
                return

    def create_recurring_run(self, body: Any) -> Any:
        rr_api = self.client._recurring_run_api
        return self._call(
            f"create recurring run {body.display_name}",
            rr_api.recurring_run_service_create_recurring_run,
            body,
        )

    def delete_recurring_run(self, recurring_run_id: str) -> None:
        rr_api = self.client._recurring_run_api
        self._call(
            f"delete recurring run {recurring_run_id}",
            rr_api.recurring_run_service_delete_recurring_run,
            recurring_run_id,
        )


def _api_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            message = json.loads(body).get("message") or json.loads(body).get("error")
            if message:
                return str(message).splitlines()[0][:200]
        except (ValueError, AttributeError):
            pass
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def connect(settings: Settings) -> Any:
    """A ``kfp.Client`` for ``kfp.host``, after a bounded probe (one line naming kfp.host when
    nothing answers), with the token or cookies from the environment."""
    from esteira.kfp_sdk import import_kfp
    from esteira_cli.submit import HEALTHZ_PATH, check_kfp_reachable

    host = settings.kfp.host
    token = os.environ.get(TOKEN_ENV) or None
    cookies = os.environ.get(COOKIES_ENV) or None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if cookies:
        headers["Cookie"] = cookies
    # kfp.Client asks healthz too, but retries a refusal 5 times, 5 s apart, with tracebacks
    answer = check_kfp_reachable(host, headers=headers)
    if answer.status_code in (401, 403) or answer.is_redirect:
        raise EsteiraError(
            "kfp.host",
            f"Kubeflow Pipelines at {host} wants credentials (HTTP {answer.status_code} "
            f"{'without' if not headers else 'with'} a token or cookies)",
            f"set {TOKEN_ENV} (a bearer token) or {COOKIES_ENV} (e.g. authservice_session=...)",
        )
    if answer.status_code != 200:
        raise EsteiraError(
            "kfp.host",
            f"{host} answered HTTP {answer.status_code} at {HEALTHZ_PATH}",
            "set kfp.host to the KFP API's base URL, e.g. https://kubeflow.example.com/pipeline",
        )
    import_kfp()
    import kfp

    kwargs: dict[str, Any] = {
        "host": settings.kfp.host,
        "existing_token": token,
        "cookies": cookies,
    }
    if settings.kfp.namespace:
        kwargs["namespace"] = settings.kfp.namespace
    try:
        with warnings.catch_warnings():  # "only works with KFP v2.0.0-beta.2 and later"
            warnings.simplefilter("ignore", FutureWarning)
            return kfp.Client(**kwargs)
    except Exception as exc:
        raise EsteiraError(
            "kfp.host",
            f"Kubeflow Pipelines at {host} did not accept the client "
            f"({type(exc).__name__}: {_api_message(exc)})",
            "check kfp.host and the credentials (ESTEIRA_KFP_TOKEN or ESTEIRA_KFP_COOKIES)",
        ) from None


# ---- upload ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Uploaded:
    pipeline: str
    pipeline_id: str
    version: str
    version_id: str
    created: bool  # False: the same content was already there under this version


def _stored_spec_matches(stored: Any, package: Package) -> bool:
    if not isinstance(stored, dict):
        return False
    if "pipeline_spec" in stored and "root" not in stored:
        return stored.get("pipeline_spec") == package.pipeline_spec and (
            stored.get("platform_spec") in (None, package.platform_spec)
        )
    return stored == package.pipeline_spec


def upload_package(kfp_api: KfpApi, package: Package, version: str) -> Uploaded:
    """Create the pipeline when missing, then add ``version``; the same version with the same
    content is a no-op, with other content an error that says what to do."""
    pipeline = kfp_api.find_pipeline(package.display_name)
    if pipeline is None:
        pipeline = kfp_api.create_pipeline(pipeline_body(package, kfp_api.namespace))
        log.info("created pipeline %s (%s)", package.display_name, pipeline.pipeline_id)
    pipeline_id = pipeline.pipeline_id
    existing = kfp_api.find_version(pipeline_id, version)
    if existing is not None:
        same = package.digest in (existing.description or "")
        if not same and DIGEST_PREFIX not in (existing.description or ""):
            stored = kfp_api.get_version(pipeline_id, existing.pipeline_version_id)
            same = _stored_spec_matches(stored.pipeline_spec, package)
        if not same:
            raise EsteiraError(
                "--version",
                f"pipeline {package.display_name} already has a version {version} with other "
                f"content than {package.path}",
                "release under a new version (a new tag), or delete that version in Kubeflow "
                "Pipelines first if it was a mistake",
            )
        return Uploaded(
            package.display_name, pipeline_id, version, existing.pipeline_version_id, False
        )
    created = kfp_api.upload_version(version_upload(package, pipeline_id, version))
    return Uploaded(package.display_name, pipeline_id, version, created.pipeline_version_id, True)


def check_images(package: Package, settings: Settings) -> None:
    """A package compiled for another image is stale: upload none of it."""
    images = package_images(package)
    wanted = settings.image.reference
    other = sorted(images - {wanted})
    if other:
        raise ConfigError(
            str(package.path),
            f"compiled for image {other[0]}, but image settings name {wanted}",
            "run `make compile` with the same ESTEIRA_IMAGE__* settings as `make images`",
        )


# ---- schedule ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scheduled:
    name: str
    recurring_run_id: str
    version: str
    cron: str
    parameters: dict[str, Any]
    changed: bool  # False: an identical recurring run was already there
    replaced: int  # older recurring runs of that name deleted


def _same_schedule(existing: Any, body: Any) -> bool:
    ref, new_ref = existing.pipeline_version_reference, body.pipeline_version_reference
    trigger = existing.trigger.cron_schedule if existing.trigger else None
    params = existing.runtime_config.parameters if existing.runtime_config else None
    return bool(
        ref
        and ref.pipeline_version_id == new_ref.pipeline_version_id
        and trigger is not None
        and trigger.cron == body.trigger.cron_schedule.cron
        and (params or {}) == body.runtime_config.parameters
        and str(existing.max_concurrency) == body.max_concurrency
        and bool(existing.no_catchup) == body.no_catchup
        and existing.mode == body.mode
    )


def schedule_pipeline(
    kfp_api: KfpApi,
    settings: Settings,
    *,
    display_name: str,
    cron: str,
    name: str,
    version: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> Scheduled:
    """Create or update the recurring run ``name`` of pipeline ``display_name`` (a version
    ``esteira upload`` put there; default the newest) in experiment ``kfp.experiment``.

    KFP has no update of a recurring run: a changed one is created anew, then the older ones
    of that name are deleted (so a failure leaves the old schedule in place)."""
    cron6 = cron_6_fields(cron)
    pipeline = kfp_api.find_pipeline(display_name)
    if pipeline is None:
        raise EsteiraError(
            "pipeline",
            f"{display_name} is not on Kubeflow Pipelines at {kfp_api.host}",
            "upload it first: esteira upload --version V",
        )
    if version:
        found = kfp_api.find_version(pipeline.pipeline_id, version)
        if found is None:
            raise EsteiraError(
                "--version",
                f"pipeline {display_name} has no version {version}",
                "upload it first (esteira upload --version V) or omit --version for the newest",
            )
    else:
        found = kfp_api.latest_version(pipeline.pipeline_id)
        if found is None:
            raise EsteiraError(
                "pipeline", f"{display_name} has no version", "esteira upload --version V"
            )
    stored = kfp_api.get_version(pipeline.pipeline_id, found.pipeline_version_id)
    params = schedule_parameters(settings, input_parameters(stored.pipeline_spec or {}), overrides)
    for key, value in params.items():
        if key.endswith("_uri") and value and "://" not in str(value):
            raise ConfigError(
                f"--param {key}",
                f"{value!r} is a local path, which the cluster's tasks cannot read",
                "set data.source_uri (or --param) to an s3:// or https:// URI",
            )
    experiment_id = kfp_api.experiment_id(settings.kfp.experiment)
    assert experiment_id is not None  # created when missing
    body = recurring_run_body(
        name=name,
        experiment_id=experiment_id,
        pipeline_id=pipeline.pipeline_id,
        version_id=found.pipeline_version_id,
        cron=cron6,
        parameters=params,
        description=f"{display_name} {found.display_name}, cron {cron6} (esteira schedule)",
    )
    existing = list(kfp_api.recurring_runs(experiment_id, name))
    existing = [r for r in existing if r.display_name == name]
    if len(existing) == 1 and _same_schedule(existing[0], body):
        return Scheduled(
            name, existing[0].recurring_run_id, found.display_name, cron6, params, False, 0
        )
    created = kfp_api.create_recurring_run(body)
    for old in existing:
        kfp_api.delete_recurring_run(old.recurring_run_id)
    return Scheduled(
        name, created.recurring_run_id, found.display_name, cron6, params, True, len(existing)
    )


def delete_schedule(kfp_api: KfpApi, settings: Settings, name: str) -> int:
    experiment_id = kfp_api.experiment_id(settings.kfp.experiment, create=False)
    runs = kfp_api.recurring_runs(experiment_id, name) if experiment_id else []
    found = [r for r in runs if r.display_name == name]
    if not found:
        raise EsteiraError(
            "--delete",
            f"no recurring run named {name} in experiment {settings.kfp.experiment}",
            "see `esteira schedule --list`",
        )
    for run in found:
        kfp_api.delete_recurring_run(run.recurring_run_id)
    return len(found)


def list_schedules(kfp_api: KfpApi, settings: Settings) -> list[dict[str, Any]]:
    experiment_id = kfp_api.experiment_id(settings.kfp.experiment, create=False)
    rows = []
    for run in kfp_api.recurring_runs(experiment_id) if experiment_id else []:
        cron = run.trigger.cron_schedule.cron if run.trigger and run.trigger.cron_schedule else ""
        ref = run.pipeline_version_reference
        rows.append(
            {
                "name": run.display_name,
                "id": run.recurring_run_id,
                "cron": cron,
                "mode": run.mode,
                "pipeline_id": ref.pipeline_id if ref else "",
                "version_id": ref.pipeline_version_id if ref else "",
            }
        )
    return rows


def display_name(pipeline: str) -> str:
    """The KFP pipeline name of ``pipelines/<pipeline>.py`` (its ``@dsl.pipeline(name=...)``)."""
    return "esteira-" + pipeline.replace("_", "-")
