"""Import the KFP SDK without its API client, which compiling and kfp.local never use.

``kfp/__init__`` imports ``kfp.client`` and with it the whole Kubernetes client, about
nine tenths of kfp's import time, unless ``_KFP_RUNTIME`` is set (as it is inside a KFP
task). :func:`import_kfp` imports the package with that variable set for the package's
``__init__`` only, so ``kfp.dsl``, ``kfp.compiler`` and ``kfp.local`` then import as
usual; ``kfp.Client`` still resolves, on first use.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

RUNTIME_ENV = "_KFP_RUNTIME"


def import_kfp() -> ModuleType:
    """The ``kfp`` package; when this is its first import, without ``kfp.client``."""
    if "kfp" in sys.modules:
        return sys.modules["kfp"]
    previous = os.environ.get(RUNTIME_ENV)
    os.environ[RUNTIME_ENV] = "true"
    try:
        import kfp
    finally:
        if previous is None:
            del os.environ[RUNTIME_ENV]
        else:
            os.environ[RUNTIME_ENV] = previous
    if not hasattr(kfp, "Client"):
        kfp.__getattr__ = _client_on_first_use
    return kfp


def _client_on_first_use(name: str):
    if name != "Client":
        raise AttributeError(f"module 'kfp' has no attribute {name!r}")
    from kfp.client import Client

    sys.modules["kfp"].Client = Client
    return Client
