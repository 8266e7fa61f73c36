"""Load ``model.joblib`` through an allowlist, never by plain unpickling.

A pickle is a program: every global it names (``find_class``) is imported and
may be called while loading. Like KServe's scikit-learn runtime, esteira loads
models with a subclass of joblib's ``NumpyUnpickler`` whose ``find_class``
refuses everything but the objects a scikit-learn model is made of:

* classes from ``sklearn``, ``numpy``, ``scipy`` and ``pandas`` (estimators,
  arrays, dtypes, frames, sparse matrices, bit generators), minus modules that
  touch files, the network or evaluate code (``*.io``, ``testing``, ``f2py``,
  ``numpy.memmap``, ``pandas.core.computation``, ...);
* the handful of module-level functions those classes pickle through
  (``numpy._core.multiarray._reconstruct``, pandas' block unpicklers, Cython's
  ``__pyx_unpickle_<Class>``), named one by one;
* a few inert builtins and ``datetime`` types, and joblib's array wrappers.

The minimal set for esteira's models was found by recording ``find_class`` while
loading every family the training step builds (gradient boosting, random forest,
logistic regression / ridge, with the ColumnTransformer and OneHotEncoder):
``builtins.slice`` is the only builtin they need. joblib routes the nested
pickles of object arrays through the same ``find_class``, so they are checked too.

Saving goes through :func:`dump_model`: Feast imports ``dill``, which extends the
pure-Python pickler joblib uses, so a plain ``joblib.dump`` in a process that has
imported Feast can write ``dill`` types no allowlist (ours or KServe's) accepts.

Anything else (``os.system``, ``builtins.eval``, ``subprocess.Popen``, a numpy
test helper) stops the load *before* the object is imported, with an
:class:`UnsafeModelError` that names it. A truncated or corrupt file gives a
:class:`CorruptModelError`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from joblib.numpy_pickle import NumpyUnpickler
from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap

from esteira.errors import EsteiraError

FIELD = "model.joblib"

ALLOWED_PACKAGES = ("sklearn", "numpy", "scipy", "pandas")

# Parts of the allowed packages that read or write files, open URLs or run code.
DENIED_MODULE_PARTS = frozenset(
    {"io", "_io", "testing", "_testing", "f2py", "distutils", "ctypeslib", "_datasource",
     "computation", "datasets", "externals", "conftest", "tests", "_lib", "clipboard",
     "_npyio_impl", "npyio", "format", "_format_impl", "plotting", "api"}
)  # fmt: skip
DENIED_NAMES = frozenset({"memmap", "DataSource", "HDFStore", "ExcelWriter", "ExcelFile"})

# Exact (module, name) pairs outside the allowed packages, or functions inside them.
ALLOWED_GLOBALS = frozenset(
    {
        ("builtins", "slice"),  # the only builtin esteira's models use
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("builtins", "bytearray"),
        ("collections", "OrderedDict"),
        ("copyreg", "_reconstructor"),
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("joblib.numpy_pickle", "NumpyArrayWrapper"),
        ("joblib.numpy_pickle_compat", "NDArrayWrapper"),
        # functions the allowed classes pickle through
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "_reconstruct"),  # models pickled with numpy 1.x
        ("numpy.core.multiarray", "scalar"),
        ("numpy.random._pickle", "__bit_generator_ctor"),
        ("numpy.random._pickle", "__generator_ctor"),
        ("numpy.random._pickle", "__randomstate_ctor"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("pandas.core.internals.blocks", "new_block"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
        ("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle"),
        ("pandas._libs.tslibs.nattype", "__nat_unpickle"),
    }
)


class UnsafeModelError(EsteiraError):
    """The model file references something that is not on the allowlist."""


class CorruptModelError(EsteiraError):
    """The model file is truncated, corrupt, or not a joblib/pickle file at all."""


def _refuse(module: str, name: str, why: str) -> UnsafeModelError:
    return UnsafeModelError(
        FIELD,
        f"refused to load: the file references {module}.{name} ({why}); nothing was executed",
        "serve only models written by esteira's training step (scikit-learn, numpy, scipy "
        "and pandas objects); retrain and register the model again",
    )


def _in_allowed_package(module: str) -> bool:
    parts = module.split(".")
    return parts[0] in ALLOWED_PACKAGES and not DENIED_MODULE_PARTS.intersection(parts[1:])


def check_global(module: str, name: str) -> None:
    """Raise :class:`UnsafeModelError` unless ``module.name`` may be imported (before importing)."""
    if (module, name) in ALLOWED_GLOBALS:
        return
    if not _in_allowed_package(module):
        raise _refuse(module, name, "not an allowed module")
    if name in DENIED_NAMES or "." in name:
        raise _refuse(module, name, "not an allowed name")
    if name.startswith("__") and not name.startswith("__pyx_unpickle_"):
        raise _refuse(module, name, "not an allowed name")


def _check_object(module: str, name: str, obj: Any) -> None:
    """Inside the allowed packages: classes, Cython unpicklers and constants, not functions."""
    if (module, name) in ALLOWED_GLOBALS or isinstance(obj, type):
        return
    if name.startswith("__pyx_unpickle_"):
        return
    if callable(obj):
        raise _refuse(module, name, "a function, and not one of the allowed reconstructors")


class SafeUnpickler(NumpyUnpickler):
    """joblib's unpickler with an allowlist in ``find_class``."""

    def find_class(self, module: str, name: str) -> Any:
        check_global(module, name)
        obj = super().find_class(module, name)
        _check_object(module, name, obj)
        return obj


def _unpickle(stream: IO[bytes], source: str) -> Any:
    with _validate_fileobject_and_memmap(stream, source, None) as (fobj, _):
        if isinstance(fobj, str):
            raise CorruptModelError(
                FIELD,
                f"{source} was written by joblib < 0.10, a format esteira does not load",
                "retrain and register the model again",
            )
        return SafeUnpickler(source, fobj, True).load()


@contextmanager
def _open(path_or_bytes: str | os.PathLike[str] | bytes) -> Iterator[tuple[IO[bytes], str]]:
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        yield io.BytesIO(bytes(path_or_bytes)), "<bytes>"
        return
    path = Path(path_or_bytes)
    if not path.is_file():
        raise CorruptModelError(FIELD, f"no file at {path}", "download the model version first")
    with path.open("rb") as fh:
        yield fh, str(path)


def load_model(path_or_bytes: str | os.PathLike[str] | bytes) -> Any:
    """The object in a joblib file (a path or its bytes), loaded through the allowlist.

    Raises :class:`UnsafeModelError` when the file names anything outside the
    allowlist (it is refused before it is imported, so nothing runs) and
    :class:`CorruptModelError` when the file is empty, truncated or not a pickle.
    """
    with _open(path_or_bytes) as (stream, source):
        if not stream.read(1):
            raise CorruptModelError(
                FIELD, f"{source} is empty (0 bytes)", "register the model again"
            )
        stream.seek(0)
        try:
            return _unpickle(stream, source)
        except EsteiraError:
            raise
        except (ImportError, AttributeError) as exc:
            raise CorruptModelError(
                FIELD,
                f"{source} needs something this environment lacks ({type(exc).__name__}: "
                f"{_short(exc)})",
                "serve with the library versions recorded in the model's metadata "
                "(library_versions), or retrain",
            ) from None
        except Exception as exc:  # anything else the unpickler trips on is a damaged file
            raise CorruptModelError(
                FIELD,
                f"{source} is truncated or corrupt ({type(exc).__name__}: {_short(exc)})",
                "register the model again; check the upload to the model storage",
            ) from None


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc) or "no detail"
    return text if len(text) <= limit else text[:limit] + "..."


def dump_model(model: Any) -> bytes:
    """``model`` as joblib bytes that :func:`load_model` and KServe's sklearn runtime accept.

    joblib's pickler copies the pure-Python pickler's dispatch table when joblib is
    imported; if ``dill`` was imported first (Feast does), that table holds dill's
    reducers in place of some standard ones. This pickler uses the standard table
    (dill's reducers removed, the entries they replaced put back from dill's copy),
    whatever the import order.
    """
    import pickle
    import sys

    from joblib.numpy_pickle import NumpyPickler

    standard = {
        kind: reducer
        for kind, reducer in pickle._Pickler.dispatch.items()
        if not getattr(reducer, "__module__", "").startswith("dill")
    }
    dill = sys.modules.get("dill._dill")
    if dill is not None:
        standard.update(dill.pickle_dispatch_copy)

    class PlainPickler(NumpyPickler):
        dispatch = dict(standard)

    buf = io.BytesIO()
    PlainPickler(buf).dump(model)
    return buf.getvalue()
