"""What the serving and monitoring commands can do for a use case today."""

from __future__ import annotations

from esteira.config import Settings
from esteira.errors import ConfigError


def require_servable(settings: Settings, what: str) -> None:
    """One line instead of a half-working server or run: the serving path and the monitoring
    demo take one entity key and an event label so far (demand forecasting: issue 20)."""
    from esteira.contract import load_contract

    contract = load_contract(settings.features.repo_path)
    if len(contract.keys) == 1 and contract.task == "classification":
        return
    raise ConfigError(
        "use_case",
        f"`esteira {what}` does not support use case {settings.use_case!r} yet "
        f"(entity {contract.keys}, {contract.task}): the transformer, the prediction log and "
        "the monitoring demo take one entity key and an event label",
        "train and gate it with `make run USECASE=...`; serve and monitor the default use case",
    )
