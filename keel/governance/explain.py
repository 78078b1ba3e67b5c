"""Model explanations as pure functions over columns of data (numpy only, no I/O).

Global importance is permutation importance over any predict function: how
much a score drops (with labels) or how much the model's output moves
(without) when one feature's values are shuffled. Per-row explanations are
exact tree SHAP values from the boosters' own APIs (XGBoost, LightGBM,
CatBoost) or ``shap.TreeExplainer`` for scikit-learn trees, else a
model-agnostic substitution: each feature in turn set to a background value.
Every result names the method that produced it.

Data is a ``Columns`` mapping, feature name -> 1-D array, in the model's
feature order; the caller turns it into the model's input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from keel.errors import InvalidInput

Columns = dict[str, np.ndarray]

PERMUTATION = "permutation"
TREE_SHAP = "tree_shap"
SUBSTITUTION = "substitution"  # not additive: a per-feature "what if it were typical"

_MAX_BATCH_ROWS = 200_000  # rows per predict call when repeats are stacked


@dataclass(frozen=True)
class ModelFunctions:
    """What the model can answer for a ``Columns`` batch: ``predict`` and maybe ``predict_proba``."""

    predict: Callable[[Columns], Any]
    predict_proba: Callable[[Columns], Any] | None = None


@dataclass(frozen=True)
class Importance:
    feature: str
    importance: float
    std: float | None
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "importance": self.importance, "std": self.std, "method": self.method}


@dataclass(frozen=True)
class PermutationResult:
    """Importances, what they measure (``measure``), and the unshuffled score when labels were given."""

    importances: list[Importance]
    measure: str
    baseline: float | None


@dataclass(frozen=True)
class Contributions:
    """Per-row, per-output, per-feature contributions: ``values[row, output, feature]``.

    For tree SHAP, ``base[output] + values[row, output].sum() == outputs[row, output]``
    (the model's raw margin). ``output`` says what is explained.
    """

    method: str
    features: list[str]
    output: str
    base: np.ndarray  # (outputs,)
    values: np.ndarray  # (rows, outputs, features)
    outputs: np.ndarray  # (rows, outputs): the explained model output

    def global_importance(self) -> list[Importance]:
        """Mean |value| over rows, summed over outputs (as shap's bar plot does)."""
        means = np.abs(self.values).mean(axis=0).sum(axis=0)
        return [Importance(f, float(m), None, self.method) for f, m in zip(self.features, means)]

    def rows(self, class_index: int | None = None) -> dict[str, Any]:
        """Plain data for one output: by default the only one, the positive class of two, or of more
        the class predicted most often."""
        n_out = self.values.shape[1]
        if class_index is None:
            class_index = min(n_out - 1, 1) if n_out <= 2 else \
                int(np.bincount(self.outputs.argmax(axis=1), minlength=n_out).argmax())
        if not 0 <= class_index < n_out:
            raise InvalidInput(f"class_index must be in 0..{n_out - 1} for this model, got {class_index}")
        return {"method": self.method, "features": list(self.features), "output": self.output,
                "class_index": class_index if n_out > 1 else None,
                "base_value": float(self.base[class_index]),
                "values": self.values[:, class_index, :].tolist(),
                "outputs": self.outputs[:, class_index].tolist()}


def num_rows(columns: Columns) -> int:
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise InvalidInput(f"all columns must have the same length, got lengths {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def sample_rows(n: int, max_rows: int, seed: int) -> np.ndarray:
    """Row indices to use: all of them, or ``max_rows`` drawn without replacement (sorted)."""
    if max_rows < 1:
        raise InvalidInput(f"max_rows must be at least 1, got {max_rows}")
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def take(columns: Columns, rows: np.ndarray) -> Columns:
    return {name: values[rows] for name, values in columns.items()}


# --- permutation importance --------------------------------------------------

def _same(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    if y.dtype.kind in "biuf" and pred.dtype.kind in "biuf":
        return y.astype(float) == pred.astype(float)
    return y.astype(str) == pred.astype(str)


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    hit, labels = _same(y, pred), y.astype(str)
    return float(np.mean([hit[labels == c].mean() for c in np.unique(labels)]))


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    y, pred = y.astype(float), pred.astype(float).reshape(y.shape)
    total = ((y - y.mean()) ** 2).sum()
    return float(1.0 - ((y - pred) ** 2).sum() / total) if total > 0 else float("nan")


# name -> score(y, predictions); greater is better (hence the neg_ errors, as in scikit-learn).
SCORERS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": lambda y, p: float(_same(y, p).mean()),
    "balanced_accuracy": _balanced_accuracy,
    "r2": _r2,
    "neg_mean_squared_error": lambda y, p: -float(((y.astype(float) - p.astype(float).reshape(y.shape)) ** 2).mean()),
    "neg_mean_absolute_error": lambda y, p: -float(np.abs(y.astype(float) - p.astype(float).reshape(y.shape)).mean()),
}


def _objective(fns: ModelFunctions, columns: Columns, y: np.ndarray | None, scoring: str | None
               ) -> tuple[str, float | None, Callable[[Columns], np.ndarray], Callable[[np.ndarray], float]]:
    """(measure name, baseline score, what to call, loss of one shuffled output) for the task at hand."""
    predictions = np.asarray(fns.predict(columns))
    classifier = fns.predict_proba is not None or predictions.dtype.kind not in "fc"
    if y is not None:
        name = scoring or ("accuracy" if classifier else "r2")
        if name not in SCORERS:
            raise InvalidInput(f"unknown scoring {name!r}; choose one of {', '.join(SCORERS)}")
        score = SCORERS[name]
        baseline = score(y, predictions)
        return name, baseline, fns.predict, lambda out: baseline - score(y, out)
    if scoring is not None:
        raise InvalidInput(f"scoring={scoring!r} needs labels: give the target column")
    if fns.predict_proba is not None:  # total variation between the class distributions
        proba = np.asarray(fns.predict_proba(columns), dtype=float)
        return "probability_change", None, fns.predict_proba, \
            lambda out: float(0.5 * np.abs(np.asarray(out, dtype=float) - proba).reshape(len(proba), -1).sum(1).mean())
    if not classifier:
        return "prediction_change", None, fns.predict, \
            lambda out: float(np.abs(out.astype(float) - predictions.astype(float)).mean())
    return "label_change_rate", None, fns.predict, lambda out: float((~_same(predictions, out)).mean())


def permutation_importance(fns: ModelFunctions, columns: Columns, y: np.ndarray | None = None, *,
                           scoring: str | None = None, n_repeats: int = 5, seed: int = 0) -> PermutationResult:
    """Importance of each feature: the mean loss over ``n_repeats`` shuffles of its column.

    With labels ``y`` the loss is the drop in ``scoring`` (default accuracy for
    classifiers, R2 otherwise); without, the mean change of the output:
    ``probability_change`` (total variation between class probabilities),
    ``prediction_change`` (mean absolute change) or ``label_change_rate``.
    The repeats of one feature go to the model as one stacked batch.
    """
    n = num_rows(columns)
    if n == 0:
        raise InvalidInput("permutation importance needs at least one row of data, got none")
    if n_repeats < 1:
        raise InvalidInput(f"n_repeats must be at least 1, got {n_repeats}")
    if y is not None and len(y) != n:
        raise InvalidInput(f"labels have {len(y)} values for {n} rows")
    measure, baseline, call, loss = _objective(fns, columns, y, scoring)
    rng = np.random.default_rng(seed)
    per_call = max(1, _MAX_BATCH_ROWS // n)
    importances = []
    for name in columns:
        losses: list[float] = []
        for start in range(0, n_repeats, per_call):
            k = min(per_call, n_repeats - start)
            shuffled = np.concatenate([columns[name][rng.permutation(n)] for _ in range(k)])
            batch = {c: shuffled if c == name else np.tile(v, k) for c, v in columns.items()}
            losses += [loss(chunk) for chunk in np.split(np.asarray(call(batch)), k)]
        importances.append(Importance(name, float(np.mean(losses)), float(np.std(losses)), PERMUTATION))
    return PermutationResult(importances, measure, baseline)


# --- per-row contributions -----------------------------------------------------

def tree_shap(model: Any, x: Any, features: list[str]) -> Contributions | None:
    """Exact tree SHAP for ``model`` (the library object) on ``x`` (its prepared input); None if not a tree model.

    XGBoost, LightGBM and CatBoost through their own APIs (values in raw
    margin units); scikit-learn trees through ``shap.TreeExplainer`` when shap
    is installed.
    """
    library = (type(model).__module__ or "").split(".", 1)[0]
    if library == "xgboost":
        import xgboost as xgb

        booster = model.get_booster() if hasattr(model, "get_booster") else model
        raw = booster.predict(xgb.DMatrix(x, enable_categorical=True), pred_contribs=True)
        return _from_raw(np.asarray(raw), features, "raw_margin")
    if library == "lightgbm":
        booster = getattr(model, "booster_", model)
        raw = np.asarray(booster.predict(x, pred_contrib=True))
        outputs = booster.num_model_per_iteration()
        return _from_raw(raw.reshape(len(raw), outputs, -1), features, "raw_margin")
    if library == "catboost":
        import catboost

        pool = catboost.Pool(x, cat_features=model.get_cat_feature_indices() or None)
        return _from_raw(np.asarray(model.get_feature_importance(data=pool, type="ShapValues")), features,
                         "raw_margin")
    if library == "sklearn":
        return _sklearn_tree_shap(model, x, features)
    return None


def _from_raw(raw: np.ndarray, features: list[str], output: str) -> Contributions:
    """Native layout (rows, [outputs,] features + 1), the bias last, into Contributions."""
    if raw.ndim == 2:
        raw = raw[:, np.newaxis, :]
    values, bias = raw[:, :, :-1].astype(float), raw[:, :, -1].astype(float)
    return Contributions(TREE_SHAP, features, output, bias[0].copy(), values, bias + values.sum(axis=2))


def _sklearn_tree_shap(model: Any, x: Any, features: list[str]) -> Contributions | None:
    try:
        import shap
    except ImportError:
        return None
    try:
        explainer = shap.TreeExplainer(model)
    except Exception:  # shap names the models it supports only by refusing the others
        return None
    values = np.asarray(explainer.shap_values(x, check_additivity=False), dtype=float)
    values = values[:, np.newaxis, :] if values.ndim == 2 else values.transpose(0, 2, 1)
    base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=float)).reshape(-1)
    output = str(getattr(explainer.model, "tree_output", "raw_value"))
    return Contributions(TREE_SHAP, features, output, base, values, base + values.sum(axis=2))


def background_values(background: Columns) -> dict[str, Any]:
    """A typical value per feature: the mean of floats, the median of integers, the mode of anything else."""
    typical: dict[str, Any] = {}
    for name, values in background.items():
        if len(values) == 0:
            raise InvalidInput("the background data has no rows")
        if values.dtype.kind == "f":
            typical[name] = np.nanmean(values) if not np.isnan(values).all() else np.nan
        elif values.dtype.kind in "iu":
            typical[name] = values.dtype.type(np.median(values))
        else:
            uniques, counts = np.unique(values.astype(str), return_counts=True)
            typical[name] = values[values.astype(str) == uniques[counts.argmax()]][0]
    return typical


def substitution(fns: ModelFunctions, columns: Columns, background: Columns) -> Contributions:
    """Model-agnostic contributions: output minus the output with the feature set to its background value.

    Explains the class probabilities when the model has them, else a numeric
    prediction, else whether the predicted label changes (1) or not (0). Not
    additive: ``base`` is the output for the all-typical row.
    """
    n, features = num_rows(columns), list(columns)
    if n == 0:
        raise InvalidInput("explanations need at least one row of data, got none")
    missing = [f for f in features if f not in background]
    if missing:
        raise InvalidInput(f"the background data lacks the feature column(s) {', '.join(map(repr, missing))}")
    typical = background_values({f: background[f] for f in features})
    call = fns.predict_proba or fns.predict
    batch = {f: np.concatenate([np.tile(v, len(features)), np.full(1, typical[f], dtype=v.dtype)])
             for f, v in columns.items()}
    for j, f in enumerate(features):  # block j: every row with feature j set to its typical value
        batch[f][j * n:(j + 1) * n] = typical[f]
    stacked = np.asarray(call({f: np.concatenate([columns[f], batch[f]]) for f in features}))
    if fns.predict_proba is None and stacked.dtype.kind not in "fc":
        changed = ~_same(np.tile(stacked[:n], len(features)), stacked[n:-1])
        values = changed.astype(float).reshape(len(features), n).T[:, np.newaxis, :]
        return Contributions(SUBSTITUTION, features, "label_changed", np.zeros(1), values, np.zeros((n, 1)))
    out = stacked.astype(float).reshape(len(stacked), -1)
    outputs, blocks, base = out[:n], out[n:-1].reshape(len(features), n, -1), out[-1]
    output = "probability" if fns.predict_proba is not None else "prediction"
    return Contributions(SUBSTITUTION, features, output, base, (outputs - blocks).transpose(1, 2, 0), outputs)
