"""Model performance once labels arrive: pure, vectorised metrics over label and prediction arrays.

:func:`evaluate_performance` computes classification metrics (accuracy,
precision, recall, F1, ROC AUC, log loss) or regression metrics (MAE, RMSE,
R2, MAPE) from plain arrays, and :func:`compare_performance` judges them
against a reference with a limit per metric. Each metric agrees with
scikit-learn's (``tests/monitoring/test_performance.py`` checks it on random
inputs); where scikit-learn returns a silent 0 or NaN for an undefined value
(precision without positive predictions, AUC with one class, R2 on a constant
target), the metric is None and ``notes`` says why.

Why numpy, not ``sklearn.metrics``: importing it costs about a second (it
pulls in scipy.stats), which every monitor window and CLI run would pay; and
its input validation walks the arrays several times. Each metric here is one
or two passes over the arrays (per-class counts by ``bincount``, AUC from
average ranks: one sort); a million rows take about 0.1 s without scores and
under 1 s with them, on this project's 2-core development machine.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from keel.errors import InvalidInput
from keel.monitoring.harm import FAIL, NOT_JUDGED, PASS, MetricComparison, PerformanceComparison, PerformanceResult

__all__ = ["binary_roc_auc", "compare_performance", "evaluate_performance"]

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("mae", "rmse", "r2", "mape")
# Errors: lower is better and their scale is the target's, so a limit on them is relative.
LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse", "mape"})


# ---------------------------------------------------------------- entry points
def evaluate_performance(
    y_true: Any,
    y_pred: Any,
    *,
    scores: Any = None,
    labels: Sequence[Any] | None = None,
    task: str = "auto",
    pos_label: Any = None,
    reference: PerformanceResult | Mapping[str, float | None] | None = None,
    max_drop: float = 0.05,
    max_error_increase: float = 0.10,
) -> PerformanceResult:
    """Performance metrics on the rows whose label has arrived.

    Args:
        y_true: Labels (or targets), one per row; null or NaN = not arrived yet, left out.
        y_pred: Predicted labels (or values), aligned with ``y_true``.
        scores: Classification only: the model's scores. Binary: one score per row
            for ``pos_label`` (or two columns, in the order of ``labels``); multiclass:
            one column per class of ``labels``. ROC AUC needs scores; log loss needs
            them to be probabilities in [0, 1].
        labels: The classes the model was trained on, in the order of the score
            columns. Labels outside them are reported in ``unseen_labels``.
        task: ``binary``, ``multiclass``, ``classification`` (binary or multiclass by
            the number of classes), ``regression`` or ``auto``: regression when
            either side holds non-integer numbers. Pass it when known: integer
            regression targets read as classes under ``auto``.
        pos_label: Binary: the positive class. Default: 1 (or True) when the
            classes are 0/1, -1/1 or booleans, else the last class in sorted order.
        reference: Metrics to compare with (an earlier result, or a mapping of
            metric name to value, e.g. the metrics logged at training).
        max_drop: Largest absolute drop of a score (accuracy, F1, AUC, R2, ...) that passes.
        max_error_increase: Largest relative increase of an error (MAE, RMSE,
            log loss, MAPE) that passes: 0.1 = 10 %.

    Raises:
        InvalidInput: Lengths differ, no row has both a label and a prediction,
            labels mix types, or scores do not fit the classes.
    """
    true, true_missing = column_array(y_true, "y_true")
    pred, pred_missing = column_array(y_pred, "y_pred")
    if len(true) != len(pred):
        raise InvalidInput(f"y_true and y_pred must have the same length; got {len(true)} and {len(pred)}.")
    keep = ~(true_missing | pred_missing)
    counts = {"rows_missing_label": int(true_missing.sum()),
              "rows_missing_prediction": int((pred_missing & ~true_missing).sum())}
    if not keep.any():
        raise InvalidInput(f"No row has both a label and a prediction ({len(true)} rows, "
                           f"{counts['rows_missing_label']} without a label): nothing to evaluate.")
    true, pred = true[keep], pred[keep]
    if task == "auto":
        task = "regression" if _non_integer(true) or _non_integer(pred) else "classification"
    if task == "regression":
        if scores is not None:
            raise InvalidInput("scores are for classification; a regression's predictions are y_pred.")
        result = _regression(true, pred, counts)
    elif task in ("classification", "binary", "multiclass"):
        score_arr = None if scores is None else _scores(scores, len(keep))[keep]
        result = _classification(true, pred, score_arr, labels, pos_label, task, counts)
    else:
        raise InvalidInput(f"task must be one of auto, binary, multiclass, classification, regression; got {task!r}.")
    if reference is None:
        return result
    comparison = compare_performance(result, reference, max_drop=max_drop, max_error_increase=max_error_increase)
    return replace(result, comparison=comparison)


def compare_performance(
    current: PerformanceResult | Mapping[str, float | None],
    reference: PerformanceResult | Mapping[str, float | None],
    *,
    max_drop: float = 0.05,
    max_error_increase: float = 0.10,
    limits: Mapping[str, float] | None = None,
) -> PerformanceComparison:
    """Judge current metrics against a reference.

    A score (higher is better) fails when it dropped by more than ``max_drop``
    (absolute: 0.05 = five points of accuracy). An error (MAE, RMSE, log loss,
    MAPE; lower is better) fails when it grew by more than ``max_error_increase``
    of the reference (relative, since its scale is the target's). ``limits``
    sets another limit per metric, on that metric's own scale. Metrics present
    on only one side, or None on either, are ``not_judged``.
    """
    cur = current.metrics if isinstance(current, PerformanceResult) else dict(current)
    ref = reference.metrics if isinstance(reference, PerformanceResult) else dict(reference)
    limits = dict(limits or {})
    rows = []
    for metric in [m for m in cur if m in ref]:
        c, r = cur[metric], ref[metric]
        lower = metric in LOWER_IS_BETTER
        kind = "relative_increase" if lower else "absolute_drop"
        limit = float(limits.get(metric, max_error_increase if lower else max_drop))
        if c is None or r is None:
            side = "current" if c is None else "reference"
            rows.append(MetricComparison(metric, r, c, None, None, limit, kind, NOT_JUDGED,
                                         f"no {side} value"))
            continue
        c, r = float(c), float(r)
        if not lower:
            degradation = r - c
        elif r > 0:
            degradation = (c - r) / r
        else:  # a perfect reference: any error at all is an unbounded relative increase
            degradation = 0.0 if c <= 0 else float("inf")
        status = FAIL if degradation > limit else PASS
        rows.append(MetricComparison(metric, r, c, c - r, degradation, limit, kind, status))
    return PerformanceComparison(any(m.status == FAIL for m in rows), max_drop, max_error_increase, rows)


# ---------------------------------------------------------------- classification
def _classification(true: np.ndarray, pred: np.ndarray, scores: np.ndarray | None, labels: Sequence[Any] | None,
                    pos_label: Any, task: str, counts: dict[str, int]) -> PerformanceResult:
    true, pred = as_labels(true), as_labels(pred)
    observed = _unique(np.concatenate([true, pred]), "y_true and y_pred")
    known = None
    if labels is not None:
        known = as_labels(np.asarray(list(labels)))
        _same_kind(known, observed, "labels", "y_true and y_pred")
        if len(_unique(known, "labels")) != len(known):
            raise InvalidInput(f"labels must not repeat a class; got {known.tolist()}.")
    model_classes = known if known is not None else observed
    binary = task == "binary" or (task == "classification" and len(model_classes) <= 2)
    if binary and len(model_classes) > 2:
        raise InvalidInput(f"task='binary' needs at most two classes; got {len(model_classes)}: "
                           f"{_show(model_classes)}. Use task='multiclass'.")
    if binary:
        pos_label = _positive(model_classes, pos_label)
        if pos_label not in model_classes.tolist():
            if known is not None:
                raise InvalidInput(f"pos_label {pos_label!r} is not one of labels {known.tolist()}.")
            extra = np.asarray([pos_label])
            _same_kind(extra, observed, "pos_label", "y_true and y_pred")
            observed = _unique(np.concatenate([observed, extra]), "pos_label and the labels")
    classes = observed if known is None else np.concatenate([known, observed[~np.isin(observed, known)]])
    n_known = len(classes) if known is None else len(known)
    t, p = _encode(true, classes), _encode(pred, classes)
    # Per class: right predictions, true rows, predicted rows. Every metric here needs
    # only these (the confusion matrix's diagonal and margins), in O(rows + classes)
    # memory even when integer targets read as thousands of classes.
    k = len(classes)
    hits = np.bincount(t[t == p], minlength=k)
    support, predicted = np.bincount(t, minlength=k), np.bincount(p, minlength=k)
    metrics: dict[str, float | None] = {"accuracy": float(hits.sum()) / len(t)}
    notes: dict[str, str] = {}
    unseen = [{"label": _plain(classes[i]), "true_count": int(support[i]), "pred_count": int(predicted[i])}
              for i in range(n_known, k)]
    per_class: list[dict[str, Any]] = []
    if binary:
        pos = classes.tolist().index(pos_label)
        metrics.update(_binary_counts(int(hits[pos]), int(predicted[pos]), int(support[pos]), notes))
    else:
        per_class = _macro(hits, support, predicted, classes, metrics, notes)
    _score_metrics(t, scores, classes, n_known, pos if binary else None, metrics, notes, per_class, unseen)
    return PerformanceResult(
        task="binary" if binary else "multiclass", rows=len(t), metrics=metrics, notes=notes,
        average="binary" if binary else "macro", pos_label=_plain(pos_label) if binary else None,
        labels=[_plain(c) for c in classes], per_class=per_class, unseen_labels=unseen, **counts)


def _binary_counts(tp: int, predicted: int, support: int, notes: dict[str, str]) -> dict[str, float | None]:
    fp, fn = predicted - tp, support - tp
    out: dict[str, float | None] = {
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None}
    if not tp + fp:
        notes["precision"] = "no positive predictions"
    if not tp + fn:
        notes["recall"] = "no positive labels in y_true"
    if not tp + fp + fn:
        notes["f1"] = "no positive label and no positive prediction"
    return out


def _macro(hits: np.ndarray, support: np.ndarray, predicted: np.ndarray, classes: np.ndarray,
           metrics: dict[str, float | None], notes: dict[str, str]) -> list[dict[str, Any]]:
    tp = hits.astype(float)
    # Macro over the classes that occur on either side (scikit-learn's default): a
    # class absent from this window says nothing about the model and must not pull
    # the mean to 0. An undefined per-class value counts as 0 (zero_division=0).
    present = (support + predicted) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
    metrics.update(precision=float(precision[present].mean()), recall=float(recall[present].mean()),
                   f1=float(f1[present].mean()))
    never_predicted = classes[present & (predicted == 0)]
    not_in_true = classes[present & (support == 0)]
    if len(never_predicted):
        notes["precision"] = f"classes never predicted count as 0: {_show(never_predicted)}"
    if len(not_in_true):
        notes["recall"] = f"classes predicted but absent from y_true count as 0: {_show(not_in_true)}"
    return [{"label": _plain(c), "support": int(s), "precision": float(pr) if pc else None,
             "recall": float(rc) if s else None, "f1": float(f), "roc_auc": None}
            for c, s, pc, pr, rc, f, on in zip(classes, support, predicted, precision, recall, f1, present) if on]


def _score_metrics(t: np.ndarray, scores: np.ndarray | None, classes: np.ndarray, n_known: int, pos: int | None,
                   metrics: dict[str, float | None], notes: dict[str, str], per_class: list[dict[str, Any]],
                   unseen: list[dict[str, Any]]) -> None:
    """ROC AUC and log loss, in place; both need scores and every label scored."""
    metrics.update(roc_auc=None, log_loss=None)
    if scores is None:
        notes["roc_auc"] = notes["log_loss"] = "no scores given"
        return
    if scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if scores.ndim == 2 and scores.shape[1] != n_known:
        raise InvalidInput(f"scores have {scores.shape[1]} columns but there are {n_known} classes "
                           f"({_show(classes[:n_known])}): pass labels=[...], the model's classes in the order "
                           "of the score columns.")
    if pos is None and scores.ndim == 1:
        raise InvalidInput(f"Multiclass scores need one column per class ({n_known}); got one score per row.")
    bad = ~np.isfinite(scores).reshape(len(scores), -1).all(axis=1)
    unscored = [u for u in unseen if u["true_count"]]
    if bad.any() or unscored:
        why = (f"scores are NaN or infinite in {int(bad.sum())} rows" if bad.any() else
               "y_true holds labels the model has no score for: " + ", ".join(str(u["label"]) for u in unscored))
        notes["roc_auc"] = notes["log_loss"] = why
        return
    if pos is not None:
        # Binary: one score per row for the positive class, or the positive class's column.
        s = scores if scores.ndim == 1 else scores[:, pos]
        is_pos = t == pos
        metrics["roc_auc"] = binary_roc_auc(is_pos, s)
        if metrics["roc_auc"] is None:
            notes["roc_auc"] = f"y_true holds one class only ({_show(classes[np.unique(t)])})"
        proba_true = np.where(is_pos, s, 1.0 - s) if scores.ndim == 1 else scores[np.arange(len(t)), t]
        in_unit = (s.min() >= 0 and s.max() <= 1) if scores.ndim == 1 else (scores.min() >= 0 and scores.max() <= 1)
    else:
        aucs = [binary_roc_auc(t == j, scores[:, j]) for j in range(n_known)]
        for row in per_class:
            j = int(np.flatnonzero(classes == row["label"])[0])
            row["roc_auc"] = aucs[j] if j < n_known else None
        defined = [a for a in aucs if a is not None]
        # One-vs-rest, macro: the mean over classes that occur in y_true (a class
        # absent from the window has no AUC of its own).
        metrics["roc_auc"] = float(np.mean(defined)) if defined else None
        skipped = [str(_plain(classes[j])) for j, a in enumerate(aucs) if a is None]
        if not defined:
            notes["roc_auc"] = f"y_true holds one class only ({_show(classes[np.unique(t)])})"
        elif skipped:
            notes["roc_auc"] = "one-vs-rest mean without classes absent from y_true: " + ", ".join(skipped)
        proba_true = scores[np.arange(len(t)), t]
        in_unit = scores.min() >= 0 and scores.max() <= 1
    if not in_unit:
        notes["log_loss"] = "scores are not probabilities (outside [0, 1])"
        return
    # As scikit-learn: probabilities clipped to [eps, 1 - eps], so a confident miss costs ~36, not infinity.
    eps = np.finfo(np.float64).eps
    metrics["log_loss"] = float(-np.mean(np.log(np.clip(proba_true, eps, 1 - eps))))


def binary_roc_auc(is_pos: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve, None when one class is absent.

    The Mann-Whitney form: the probability that a random positive scores above
    a random negative, ties counting half, from average ranks (one sort). Equals
    ``sklearn.metrics.roc_auc_score``.
    """
    n_pos = int(np.count_nonzero(is_pos))
    n_neg = len(is_pos) - n_pos
    if not n_pos or not n_neg:
        return None
    _, inverse, run = np.unique(score, return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(run) - (run - 1) / 2.0  # 1-based average rank of each distinct score
    rank_sum = float(avg_rank[inverse.reshape(-1)][is_pos].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


# ---------------------------------------------------------------- regression
def _regression(true: np.ndarray, pred: np.ndarray, counts: dict[str, int]) -> PerformanceResult:
    y, f = _floats(true, "y_true"), _floats(pred, "y_pred")
    err = f - y
    sse = float(np.dot(err, err))
    sst = float(np.sum((y - y.mean()) ** 2))
    nonzero = y != 0
    notes: dict[str, str] = {}
    metrics: dict[str, float | None] = {
        "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(sse / len(y))),
        "r2": 1.0 - sse / sst if sst > 0 else None,
        # MAPE without rows whose target is 0 (a percentage of 0 is undefined;
        # scikit-learn divides by 2.2e-16 there, which swamps the mean).
        "mape": float(np.mean(np.abs(err[nonzero]) / np.abs(y[nonzero]))) if nonzero.any() else None}
    if sst == 0:
        notes["r2"] = "y_true is constant: R2 is undefined"
    if not nonzero.all():
        notes["mape"] = ("every y_true is 0: MAPE is undefined" if not nonzero.any() else
                         f"{int((~nonzero).sum())} rows with y_true = 0 left out")
    return PerformanceResult(task="regression", rows=len(y), metrics=metrics, notes=notes, **counts)


# ---------------------------------------------------------------- input helpers
def column_array(values: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A 1-D input as numpy, and its missing mask (null, None or NaN)."""
    try:
        arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must be a 1-D array of labels or numbers of one type; got {exc}") from None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    missing = arr.is_null(nan_is_null=True).to_numpy(zero_copy_only=False)
    return arr.to_numpy(zero_copy_only=False), missing


def _scores(scores: Any, n: int) -> np.ndarray:
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"scores must be numbers; got {exc}") from None
    if s.ndim not in (1, 2) or len(s) != n:
        raise InvalidInput(f"scores must have one row per label ({n}), one column or one per class; "
                           f"got shape {s.shape}.")
    return s


def _non_integer(values: np.ndarray) -> bool:
    return values.dtype.kind == "f" and bool(np.any(values != np.round(values)))


def as_labels(values: np.ndarray) -> np.ndarray:
    """Whole-number floats as integers (models often return 1.0 for the label 1);
    booleans that came through Arrow with nulls as booleans again."""
    if values.dtype.kind == "f" and not _non_integer(values) and np.isfinite(values).all():
        return values.astype(np.int64)
    if values.dtype.kind == "O" and len(values) and all(isinstance(v, (bool, np.bool_)) for v in values):
        return values.astype(bool)
    return values


def _same_kind(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Numbers and text never match as labels: numpy would turn the numbers into text."""
    def kind(x: np.ndarray) -> str:
        if x.dtype.kind in "biuf":
            return "numbers"
        if x.dtype.kind == "O" and len(x) and not all(isinstance(v, str) for v in x.tolist()):
            return "mixed"
        return "text"
    if len(a) and len(b) and kind(a) != kind(b):
        raise InvalidInput(f"{name_a} hold {kind(a)} but {name_b} hold {kind(b)}; got {_show(a)} "
                           f"and {_show(b)}: give the labels as the model returns them.")


def _unique(values: np.ndarray, what: str) -> np.ndarray:
    try:
        return np.unique(values)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in values.tolist()})
        raise InvalidInput(f"{what} mix label types ({', '.join(kinds)}): cast them to one type.") from None


def _encode(values: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Each value's index in ``classes`` (every value is one of them)."""
    order = np.argsort(classes, kind="stable")
    return order[np.searchsorted(classes[order], values)]


def _positive(classes: np.ndarray, pos_label: Any) -> Any:
    if pos_label is not None:
        return _plain(pos_label)
    if classes.dtype.kind == "b":
        return True
    found = set(_plain(c) for c in classes)
    if found <= {0, 1} or found <= {-1, 1}:
        return 1
    return _plain(np.sort(classes)[-1])


def _floats(values: np.ndarray, name: str) -> np.ndarray:
    try:
        out = values.astype(np.float64)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be numbers for regression; got {values.dtype} values.") from None
    if not np.isfinite(out).all():
        raise InvalidInput(f"{name} holds {int((~np.isfinite(out)).sum())} infinite values.")
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _show(values: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(_plain(v)) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")
