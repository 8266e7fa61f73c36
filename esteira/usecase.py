"""Use cases as directories: ``feature_repo/<use case>/``.

A use case is everything one team brings, in one directory, and no code elsewhere:

```
feature_repo/<use case>/
    usecase.yaml        description, the settings this use case changes (model name and task,
                        gate, data source, feature service, ...), data-generator parameters
    dataset.yaml        the data contract (esteira/contract.py)
    definitions.py      the Feast definitions, built from the contract
    feature_store.yaml  the Feast repository config (local mode)
    generator.py        optional: the seeded demo-data generator (`generate(...) -> DataFrame`)
```

``feature_repo/usecases.yaml`` names the default use case. The settings a use case
changes sit *under* everything else: defaults, then the use case's ``settings``, then a
YAML file, then ``ESTEIRA_*`` variables (``esteira/config.py``). A use case is named by
its directory or by its model's name (``model.name`` in its ``usecase.yaml``), so the
pipelines' ``use_case`` run parameter, which has always been the registered model's
name, selects one too.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from esteira.pyfile import import_file

ROOT = Path(__file__).resolve().parent.parent
USECASES_DIR = ROOT / "feature_repo"
INDEX_FILE = "usecases.yaml"
USECASE_FILE = "usecase.yaml"
GENERATOR_FILE = "generator.py"


class UseCaseError(ValueError):
    """A use case that does not exist or whose usecase.yaml is malformed."""


@dataclass(frozen=True)
class UseCase:
    name: str
    path: Path
    description: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def model_name(self) -> str | None:
        return (self.settings.get("model") or {}).get("name")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UseCaseError(f"{path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise UseCaseError(f"{path} must hold a mapping")
    return values


def _stamp(directory: Path) -> tuple:
    """What the cache key watches: every usecase.yaml and the index, by mtime."""
    files = [directory / INDEX_FILE, *sorted(directory.glob(f"*/{USECASE_FILE}"))]
    return tuple((str(p), p.stat().st_mtime_ns) for p in files if p.is_file())


@lru_cache(maxsize=8)
def _catalog(directory: str, stamp: tuple) -> tuple[str, tuple[UseCase, ...]]:
    root = Path(directory)
    cases = []
    for path in sorted(root.glob(f"*/{USECASE_FILE}")):
        values = _read_yaml(path)
        unknown = sorted(set(values) - {"description", "settings"})
        if unknown:
            raise UseCaseError(f"{path}: unknown key(s) {unknown}; allowed: description, settings")
        settings = values.get("settings") or {}
        if not isinstance(settings, dict):
            raise UseCaseError(f"{path}: `settings` must be a mapping of config sections")
        cases.append(
            UseCase(
                name=path.parent.name,
                path=path.parent,
                description=str(values.get("description", "")).strip(),
                settings=settings,
            )
        )
    index = root / INDEX_FILE
    default = _read_yaml(index).get("default") if index.is_file() else None
    if default is None and cases:
        default = cases[0].name
    return str(default or ""), tuple(cases)


def catalog(directory: Path = USECASES_DIR) -> tuple[str, tuple[UseCase, ...]]:
    """(the default use case's name, every use case) under ``directory``."""
    return _catalog(str(directory), _stamp(directory))


def names(directory: Path = USECASES_DIR) -> list[str]:
    return [c.name for c in catalog(directory)[1]]


def default_name(directory: Path = USECASES_DIR) -> str:
    return catalog(directory)[0]


def find(name: str, directory: Path = USECASES_DIR) -> UseCase | None:
    """The use case named ``name`` (its directory) or whose model is named ``name``."""
    cases = catalog(directory)[1]
    for case in cases:
        if case.name == name:
            return case
    for case in cases:
        if case.model_name == name:
            return case
    return None


def load(name: str | None = None, directory: Path = USECASES_DIR) -> UseCase:
    """The use case ``name`` (default: the default one); an unknown name says which exist."""
    chosen = name or default_name(directory)
    case = find(chosen, directory)
    if case is None:
        raise UseCaseError(
            f"no use case {chosen!r} under {directory} (have: {', '.join(names(directory))})"
        )
    return case


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, section by section (mappings merge, other values replace);
    ``hyperparameters`` and ``thresholds`` are values, replaced whole."""
    out = dict(base)
    for key, value in override.items():
        if (
            isinstance(value, dict)
            and isinstance(out.get(key), dict)
            and key not in ("hyperparameters", "thresholds", "generator")
        ):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


# ---- the demo-data generator -------------------------------------------------------------
_GENERATORS: dict[str, ModuleType] = {}


def generator_module(case: UseCase) -> ModuleType | None:
    """The use case's ``generator.py``, imported by path (None when it has none)."""
    path = case.path / GENERATOR_FILE
    if not path.is_file():
        return None
    key = f"{path}:{path.stat().st_mtime_ns}"
    if key not in _GENERATORS:
        _GENERATORS[key] = import_file(path, f"_esteira_generator_{case.name}")
    return _GENERATORS[key]


def generator_arguments(
    fn: Any, data: dict[str, Any], overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The arguments ``generate`` gets: every ``data`` setting it names (``days``, ``start``,
    ``seed``, ``period``, ...), then ``data.generator`` (its own parameters), then ``overrides``."""
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    args = {k: v for k, v in data.items() if k in params and k != "generator"}
    args |= dict(data.get("generator") or {})
    args |= {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(k for k in args if k not in params) if not takes_any else []
    if unknown:
        raise UseCaseError(
            f"data.generator: {unknown} are not parameters of the generator "
            f"(it takes {sorted(params)})"
        )
    return args


def generate_data(settings: Any, **overrides: Any) -> tuple[Any, dict[str, Any]]:
    """The use case's demo data for ``settings`` (a DataFrame) and the arguments it was made with.

    ``overrides`` (``days``, ``start``, ``period``, a generator parameter, ...) win over
    ``settings.data``; ``None`` values are ignored.
    """
    case = load(settings.use_case or None)
    module = generator_module(case)
    if module is None or not hasattr(module, "generate"):
        raise UseCaseError(
            f"use case {case.name!r} has no {GENERATOR_FILE} with a `generate` function: "
            "bring your own data (data.source_uri)"
        )
    args = generator_arguments(module.generate, settings.data.model_dump(), overrides)
    return module.generate(**args), args


def describe_arguments(args: dict[str, Any]) -> str:
    """``k=v`` pairs for a log line, in a stable order."""
    return ", ".join(f"{k}={v}" for k, v in sorted(args.items()))
