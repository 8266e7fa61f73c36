"""The array path: the training Pipeline evaluated without pandas, and its trees without Cython calls.

A single-row request spends most of its time not in arithmetic but around it:
building a one-row DataFrame for the ColumnTransformer, sklearn's input validation,
and, for HistGradientBoosting, one Cython call per tree. This module does the same
arithmetic directly:

* :class:`FastPipeline` applies the ColumnTransformer's passthrough, StandardScaler
  and OneHotEncoder blocks on numpy arrays, then the estimator;
* :class:`TreeEnsemble` walks a fitted HistGradientBoosting model's trees in plain
  Python for small requests (up to :data:`TreeEnsemble.MAX_ROWS` rows), with the
  same comparisons, the same missing-value rule and the same order of additions as
  sklearn, then applies the model's own link function.

Nothing here is trusted on its structure alone: :func:`verified_array_path` returns a
path only after it reproduced the Pipeline's output exactly on probe rows, one at a
time and all together; any other model, or any doubt, keeps the Pipeline itself.
The model file stays plain scikit-learn, so KServe's sklearn runtime serves it too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from serving.feature_schema import FeatureSchema

log = logging.getLogger(__name__)

# one tree as parallel lists: is_leaf, feature, threshold, missing_go_left, left, right, value
Tree = tuple[list[bool], list[int], list[float], list[bool], list[int], list[int], list[float]]


class TreeEnsemble:
    """A fitted HistGradientBoosting model (binary or regression) as Python lists.

    Walking 30 small trees for one row takes a few microseconds in Python, against a
    few hundred for ``predict_proba`` (validation plus one Cython call per tree);
    for more than :attr:`MAX_ROWS` rows sklearn's vectorised walk wins and is used.
    """

    MAX_ROWS = 8

    def __init__(self, estimator: Any, baseline: float, trees: list[Tree]) -> None:
        self.estimator = estimator
        self.baseline = baseline
        self.trees = trees

    @classmethod
    def compile(cls, estimator: Any) -> TreeEnsemble | None:
        """The ensemble, or None when the model is not one this walk reproduces."""
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        if type(estimator) not in (HistGradientBoostingClassifier, HistGradientBoostingRegressor):
            return None
        try:
            if estimator.n_trees_per_iteration_ != 1:  # multiclass: one tree per class
                return None
            if estimator.is_categorical_ is not None and np.any(estimator.is_categorical_):
                return None
            baseline = np.asarray(estimator._baseline_prediction, dtype="float64").reshape(-1)
            trees = []
            for iteration in estimator._predictors:
                (predictor,) = iteration
                nodes = predictor.nodes
                if np.any(nodes["is_categorical"]):
                    return None
                trees.append(
                    (
                        nodes["is_leaf"].astype(bool).tolist(),
                        nodes["feature_idx"].tolist(),
                        nodes["num_threshold"].tolist(),
                        nodes["missing_go_to_left"].astype(bool).tolist(),
                        nodes["left"].tolist(),
                        nodes["right"].tolist(),
                        nodes["value"].tolist(),
                    )
                )
        except (AttributeError, KeyError, TypeError, ValueError):  # another sklearn layout
            return None
        if baseline.shape != (1,):
            return None
        return cls(estimator, float(baseline[0]), trees)

    def raw(self, row: list[float]) -> float:
        """The sum of the leaves reached by ``row``, starting from the baseline."""
        total = self.baseline
        for is_leaf, feature, threshold, missing_left, left, right, value in self.trees:
            node = 0
            while not is_leaf[node]:
                x = row[feature[node]]
                if x != x:  # NaN: the side the training sent missing values to
                    node = left[node] if missing_left[node] else right[node]
                elif x <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            total += value[node]
        return total

    def raw_predictions(self, rows: list[list[float]]) -> np.ndarray:
        """Shape (rows, 1), as sklearn's ``_raw_predict``."""
        return np.array([[self.raw(row)] for row in rows], dtype="float64")

    def predict_proba(self, rows: list[list[float]]) -> np.ndarray:
        return self.estimator._loss.predict_proba(self.raw_predictions(rows))

    def predict(self, rows: list[list[float]]) -> np.ndarray:
        return self.estimator._loss.link.inverse(self.raw_predictions(rows).ravel())


class FastPipeline:
    """The training Pipeline (ColumnTransformer of passthrough/StandardScaler and
    OneHotEncoder, then an estimator) evaluated on numpy arrays.

    :meth:`compile` returns None for any other structure.
    """

    def __init__(
        self,
        blocks: list[tuple[str, list[str], Any]],
        estimator: Any,
        trees: TreeEnsemble | None = None,
    ) -> None:
        self.blocks = blocks
        self.estimator = estimator
        self.trees = trees

    @classmethod
    def compile(cls, model: Any, schema: FeatureSchema) -> FastPipeline | None:
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline

        if not isinstance(model, Pipeline) or len(model.steps) != 2:
            return None
        prep, estimator = model.steps[0][1], model.steps[1][1]
        if not isinstance(prep, ColumnTransformer) or hasattr(estimator, "feature_names_in_"):
            return None
        if getattr(prep, "sparse_output_", False):
            return None
        blocks = []
        for _, transformer, cols in prep.transformers_:
            cols = list(cols) if not isinstance(cols, str) else [cols]
            if transformer == "drop" or not cols:
                continue
            if not all(isinstance(c, str) and c in schema.kinds for c in cols):
                return None
            block = _block(transformer, cols)
            if block is None:
                return None
            blocks.append(block)
        return cls(blocks, estimator, TreeEnsemble.compile(estimator))

    def matrix(self, columns: dict[str, Any]) -> np.ndarray:
        """The ColumnTransformer's output, as a float array."""
        parts = []
        for kind, cols, params in self.blocks:
            if kind == "onehot":
                parts.append(_one_hot(columns, cols, params))
                continue
            block = np.column_stack([np.asarray(columns[c], dtype="float64") for c in cols])
            if kind == "scale":
                block = (block - params[0]) / params[1]
            parts.append(block)
        return np.hstack(parts) if len(parts) > 1 else parts[0]

    def rows(self, columns: dict[str, Any], n: int) -> list[list[float]]:
        """:meth:`matrix` as Python rows, built without numpy: the tree walk's input."""
        out: list[list[float]] = [[] for _ in range(n)]
        for kind, cols, params in self.blocks:
            values = [columns[c] for c in cols]
            for i, row in enumerate(out):
                if kind == "pass":
                    row.extend([float(v[i]) for v in values])
                elif kind == "scale":
                    _, _, mean, scale = params
                    row.extend(
                        [(float(v[i]) - m) / d for v, m, d in zip(values, mean, scale, strict=True)]
                    )
                else:
                    for v, mapping in zip(values, params, strict=True):
                        hot = [0.0] * len(mapping)
                        index = mapping.get(v[i])
                        if index is not None:  # unknown categories: all zeros
                            hot[index] = 1.0
                        row.extend(hot)
        return out

    def _walkable(self, columns: dict[str, Any]) -> list[list[float]] | None:
        """The rows for the tree walk, when there is one and the request is small."""
        if self.trees is None:
            return None
        n = len(next(iter(columns.values())))
        return self.rows(columns, n) if n <= TreeEnsemble.MAX_ROWS else None

    def predict_proba(self, columns: dict[str, Any]) -> np.ndarray:
        rows = self._walkable(columns)
        if rows is not None:
            return self.trees.predict_proba(rows)
        return self.estimator.predict_proba(self.matrix(columns))

    def predict(self, columns: dict[str, Any]) -> np.ndarray:
        rows = self._walkable(columns)
        if rows is not None:
            return self.trees.predict(rows)
        return self.estimator.predict(self.matrix(columns))


def _block(transformer: Any, cols: list[str]) -> tuple[str, list[str], Any] | None:
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    if transformer == "passthrough" or (
        isinstance(transformer, FunctionTransformer)
        and transformer.func is None
        and not transformer.validate
    ):
        return ("pass", cols, None)
    if type(transformer) is StandardScaler:
        # (x - mean) / scale, with 0 and 1 for a scaler that does not center or scale:
        # the same result bit for bit (x - 0.0 and x / 1.0 are x)
        ones = np.ones(len(cols))
        scale = ones if transformer.scale_ is None else np.asarray(transformer.scale_, "float64")
        mean = np.asarray(transformer.mean_, "float64") if transformer.with_mean else 0 * ones
        return ("scale", cols, (mean, scale, mean.tolist(), scale.tolist()))
    if (
        type(transformer) is OneHotEncoder
        and transformer.handle_unknown == "ignore"
        and getattr(transformer, "drop_idx_", None) is None
        and not getattr(transformer, "_infrequent_enabled", False)
        and not transformer.sparse_output
    ):
        maps = [{v: i for i, v in enumerate(cats.tolist())} for cats in transformer.categories_]
        return ("onehot", cols, maps)
    return None


def _one_hot(columns: dict[str, Any], cols: list[str], maps: list[dict]) -> np.ndarray:
    n = len(columns[cols[0]])
    width = sum(len(m) for m in maps)
    out = np.zeros((n, width), dtype="float64")
    offset = 0
    for col, mapping in zip(cols, maps, strict=True):
        for row, value in enumerate(columns[col]):
            index = mapping.get(value)
            if index is not None:  # unknown categories are all zeros (handle_unknown=ignore)
                out[row, offset + index] = 1.0
        offset += len(mapping)
    return out


def probe_rows(schema: FeatureSchema, fast: FastPipeline, rows: int = 64) -> dict[str, np.ndarray]:
    """Rows covering every known category plus an unknown one, and numbers of every
    magnitude from 0.01 to 10,000 of both signs, from a fixed seed."""
    rng = np.random.default_rng(0)
    categories: dict[str, list[str]] = {}
    for kind, cols, params in fast.blocks:
        if kind == "onehot":
            for col, mapping in zip(cols, params, strict=True):
                categories[col] = [str(v) for v in mapping] + ["__unseen__"]
    columns: dict[str, np.ndarray] = {}
    for name in schema.names:
        kind = schema.kinds[name]
        if kind == "category":
            known = categories.get(name, ["a"])
            columns[name] = np.array([known[i % len(known)] for i in range(rows)], dtype=object)
        elif kind == "int":
            columns[name] = rng.integers(0, 100, rows).astype("int64")
        else:
            magnitude = 10.0 ** rng.uniform(-2, 4, rows)
            columns[name] = magnitude * rng.choice([-1.0, 1.0], rows)
    return columns


def verified_array_path(
    model: Any,
    schema: FeatureSchema,
    task: str,
    frame: Callable[[dict[str, np.ndarray]], pd.DataFrame],
) -> FastPipeline | None:
    """The array path for ``model``, if it has the training structure and agrees exactly.

    The probe goes through it row by row (the tree walk, when there is one) and all
    at once (sklearn's own estimator), each compared with the Pipeline on a DataFrame.
    """
    fast = FastPipeline.compile(model, schema)
    if fast is None:
        return None
    probe = probe_rows(schema, fast)
    if task == "classification":
        ours, theirs, atol = fast.predict_proba, model.predict_proba, 1e-12
    else:
        ours, theirs, atol = fast.predict, model.predict, 1e-9
    try:
        expected = np.asarray(theirs(frame(probe)))
        one_by_one = np.concatenate(
            [ours({k: v[i : i + 1] for k, v in probe.items()}) for i in range(len(expected))]
        )
        together = ours(probe)
        same = np.allclose(one_by_one, expected, rtol=0, atol=atol) and np.allclose(
            together, expected, rtol=0, atol=atol
        )
    except Exception as exc:  # any doubt: use the Pipeline itself
        log.warning("array path disabled: %s", type(exc).__name__)
        return None
    if not same:
        log.warning("array path disabled: it does not reproduce the Pipeline's output")
        return None
    return fast
