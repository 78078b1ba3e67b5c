"""Fairness across the groups of a sensitive column: pure, vectorised, with limits that can fail a check.

:func:`evaluate_fairness` takes the group of each row, the model's
predictions and, once they arrive, the labels (and optionally scores), and
computes per-group metrics and the disparities fairlearn defines
(``fairlearn.metrics``, ``method="between_groups"``):

- demographic parity difference: the largest minus the smallest selection
  rate P(pred = pos | group);
- demographic parity ratio: the smallest over the largest selection rate;
- equalized-odds difference: the larger of the true-positive-rate difference
  and the false-positive-rate difference (``agg="worst_case"``).

Two choices differ from fairlearn on purpose, both where fairlearn has no
sound answer: a group with no positive label has no TPR (fairlearn's confusion
matrix reports 0), so it is left out of the TPR difference rather than
counted as a total miss; and groups smaller than ``min_group_size`` are
listed but left out of the disparities, since a rate over a handful of rows
swings by more than any sensible limit. With every group large enough and
holding both classes, the numbers equal fairlearn's
(``tests/monitoring/test_fairness.py`` runs fairlearn itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from keel.errors import InvalidInput
from keel.monitoring.harm import FAIL, NOT_JUDGED, PASS, FairnessResult, GroupMetrics, LimitCheck
from keel.monitoring.performance import as_labels, binary_roc_auc, column_array

__all__ = ["FairnessLimits", "MISSING_GROUP", "evaluate_fairness"]

MISSING_GROUP = "(missing)"
# Float noise must not fail a check: 0.4 - 0.3 is 0.10000000000000003.
_TOLERANCE = 1e-12


@dataclass(frozen=True)
class FairnessLimits:
    """The limits a fairness check enforces; None turns one off.

    Attributes:
        max_parity_difference: Largest demographic parity difference that passes.
        min_parity_ratio: Smallest demographic parity ratio that passes (0.8 is the
            "four-fifths rule" of US employment guidelines).
        max_equalized_odds_difference: Largest equalized-odds difference that passes
            (judged only with labels).
    """

    max_parity_difference: float | None = 0.1
    min_parity_ratio: float | None = 0.8
    max_equalized_odds_difference: float | None = 0.1


def evaluate_fairness(
    groups: Any,
    y_pred: Any,
    y_true: Any = None,
    *,
    scores: Any = None,
    pos_label: Any = None,
    limits: FairnessLimits | Mapping[str, float | None] | None = None,
    min_group_size: int = 100,
    sensitive: str | None = None,
) -> FairnessResult:
    """Per-group metrics, disparities and limit verdicts.

    Args:
        groups: The sensitive column: each row's group (null = its own group, ``(missing)``).
        y_pred: Predicted labels; the decision compared is ``y_pred == pos_label``.
        y_true: Labels, if they have arrived (null or NaN = not yet): needed for
            accuracy, TPR, FPR, precision and the equalized-odds difference.
        scores: One score per row for ``pos_label``: per-group ROC AUC (with labels).
        pos_label: The favourable outcome. Default: 1 (or True) when the labels are
            0/1, -1/1 or booleans; otherwise it must be given.
        limits: :class:`FairnessLimits` or a mapping of its fields; default
            ``FairnessLimits()`` (0.1, 0.8, 0.1).
        min_group_size: Groups with fewer rows are reported with ``too_small`` and
            left out of the disparities. The default, 100, keeps the standard error
            of a group's rate at most 0.05 (0.5 / sqrt(100)), half the default limit.
        sensitive: The sensitive column's name, for the report.

    Raises:
        InvalidInput: Lengths differ, no row has a prediction, or ``pos_label`` is
            needed and missing.
    """
    limits = _limits(limits)
    codes, names = _groups(groups)
    pred, pred_missing = column_array(y_pred, "y_pred")
    n = len(codes)
    if len(pred) != n:
        raise InvalidInput(f"groups and y_pred must have the same length; got {n} and {len(pred)}.")
    notes: dict[str, str] = {}
    if y_true is not None:
        true, true_missing = column_array(y_true, "y_true")
        if len(true) != n:
            raise InvalidInput(f"groups and y_true must have the same length; got {n} and {len(true)}.")
    keep = ~pred_missing
    if not keep.any():
        raise InvalidInput(f"No row has a prediction ({n} rows): nothing to judge.")
    if pred_missing.any():
        notes["rows"] = f"{int(pred_missing.sum())} rows without a prediction left out"
    codes, pred = codes[keep], as_labels(pred[keep])
    pos_label = _positive(pred if y_true is None else np.concatenate([pred, as_labels(true[keep & ~true_missing])]),
                          pos_label)
    selected = np.asarray(pred == pos_label, dtype=bool)
    k = len(names)
    count = np.bincount(codes, minlength=k)
    table: dict[str, np.ndarray] = {"count": count, "selected": np.bincount(codes, selected, k)}
    if y_true is not None:
        true, labelled = as_labels(true[keep]), ~true_missing[keep]
        positive = labelled & np.asarray(true == pos_label, dtype=bool)
        correct = labelled & np.asarray(true == pred, dtype=bool)
        table.update(labelled=np.bincount(codes, labelled, k), positives=np.bincount(codes, positive, k),
                     correct=np.bincount(codes, correct, k), tp=np.bincount(codes, positive & selected, k),
                     fp=np.bincount(codes, labelled & ~positive & selected, k),
                     selected_labelled=np.bincount(codes, labelled & selected, k))
    aucs = _group_aucs(codes, k, scores, keep, positive, labelled) if y_true is not None and scores is not None \
        else [None] * (k + 1)
    rows = [_metrics(names[g], {c: v[g] for c, v in table.items()}, len(codes), aucs[g], min_group_size)
            for g in range(k) if count[g]]
    rows.sort(key=lambda r: (-r.count, r.group))
    overall = _metrics("(all)", {c: v.sum() for c, v in table.items()}, len(codes), aucs[k], 0)
    judged = [r for r in rows if not r.too_small]
    dpd, dpr = _spread([r.selection_rate for r in judged], "demographic_parity", notes, min_group_size, ratio=True)
    tprd = fprd = eod = None
    if y_true is not None:
        tprd, _ = _spread([r.tpr for r in judged if r.tpr is not None], "true_positive_rate", notes,
                          min_group_size, what="with a positive label")
        fprd, _ = _spread([r.fpr for r in judged if r.fpr is not None], "false_positive_rate", notes,
                          min_group_size, what="with a negative label")
        if tprd is not None and fprd is not None:
            eod = max(tprd, fprd)
        else:
            notes["equalized_odds_difference"] = "needs both the TPR and the FPR difference"
    else:
        notes["equalized_odds_difference"] = "no labels (y_true)"
    checks = _checks(limits, dpd, dpr, eod, notes)
    status = FAIL if any(c.status == FAIL for c in checks) else \
        PASS if any(c.status == PASS for c in checks) else NOT_JUDGED
    return FairnessResult(
        sensitive=sensitive, pos_label=pos_label, min_group_size=min_group_size, rows=len(codes), groups=rows,
        overall=overall, groups_judged=len(judged), demographic_parity_difference=dpd,
        demographic_parity_ratio=dpr, true_positive_rate_difference=tprd, false_positive_rate_difference=fprd,
        equalized_odds_difference=eod, checks=checks, status=status, notes=notes)


def _groups(groups: Any) -> tuple[np.ndarray, list[str]]:
    """Each row's group as a code, and the groups' names (null last, as ``(missing)``)."""
    try:
        arr = groups if isinstance(groups, (pa.Array, pa.ChunkedArray)) else pa.array(groups, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise InvalidInput(f"groups must be a 1-D array of one type; got {exc}") from None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_encode()
    names = [str(v) for v in arr.dictionary.to_pylist()]
    codes = arr.indices.fill_null(len(names)).to_numpy(zero_copy_only=False).astype(np.int64)
    if arr.null_count:
        names.append(MISSING_GROUP)
    return codes, names


def _positive(values: np.ndarray, pos_label: Any) -> Any:
    if pos_label is not None:
        return pos_label.item() if isinstance(pos_label, np.generic) else pos_label
    if values.dtype.kind == "b":
        return True
    found = set(np.unique(values).tolist()) if values.dtype.kind != "O" else set(values.tolist())
    if found <= {0, 1} or found <= {-1, 1}:
        return 1
    shown = sorted(map(str, found))[:5]
    raise InvalidInput(f"pos_label is needed: the predictions are not 0/1 or booleans (got {shown}); "
                       "pass the favourable outcome, e.g. pos_label='approved'.")


def _group_aucs(codes: np.ndarray, k: int, scores: Any, keep: np.ndarray, positive: np.ndarray,
                labelled: np.ndarray) -> list[float | None]:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) != len(keep):
        raise InvalidInput(f"scores must hold one score per row ({len(keep)}) for pos_label; got shape {s.shape}.")
    s = s[keep]
    ok = labelled & np.isfinite(s)
    out = [binary_roc_auc(positive[ok & (codes == g)], s[ok & (codes == g)]) for g in range(k)]
    return out + [binary_roc_auc(positive[ok], s[ok])]


def _metrics(name: str, t: dict[str, Any], total: int, auc: float | None, min_size: int) -> GroupMetrics:
    count = int(t["count"])

    def rate(num: str, den: float) -> float | None:
        return float(t[num]) / den if den else None

    if "labelled" not in t:
        return GroupMetrics(name, count, count / total, float(t["selected"]) / count, too_small=count < min_size)
    labelled, positives = int(t["labelled"]), int(t["positives"])
    return GroupMetrics(
        group=name, count=count, share=count / total, selection_rate=float(t["selected"]) / count,
        labelled=labelled, positives=positives, accuracy=rate("correct", labelled),
        tpr=rate("tp", positives), fpr=rate("fp", labelled - positives),
        precision=rate("tp", float(t["selected_labelled"])), roc_auc=auc, too_small=count < min_size)


def _spread(values: list[float], name: str, notes: dict[str, str], min_size: int, *, ratio: bool = False,
            what: str = "") -> tuple[float | None, float | None]:
    """Largest minus smallest (and smallest over largest) across the judged groups."""
    if len(values) < 2:
        why = (f"needs two groups of at least {min_size} rows{' ' + what if what else ''}; "
               f"{len(values)} found")
        notes[f"{name}_difference"] = why
        if ratio:
            notes[f"{name}_ratio"] = why
        return None, None
    lo, hi = min(values), max(values)
    if ratio and hi == 0:
        notes[f"{name}_ratio"] = "no group has a positive prediction: the ratio is 0 / 0"
    return hi - lo, (lo / hi if hi > 0 else None)


def _checks(limits: FairnessLimits, dpd: float | None, dpr: float | None, eod: float | None,
            notes: dict[str, str]) -> list[LimitCheck]:
    specs = [("max_parity_difference", "demographic_parity_difference", dpd, limits.max_parity_difference, False),
             ("min_parity_ratio", "demographic_parity_ratio", dpr, limits.min_parity_ratio, True),
             ("max_equalized_odds_difference", "equalized_odds_difference", eod,
              limits.max_equalized_odds_difference, False)]
    out = []
    for name, metric, value, limit, is_min in specs:
        if limit is None:
            continue
        if value is None:
            out.append(LimitCheck(name, metric, None, limit, NOT_JUDGED, notes.get(metric, "undefined")))
            continue
        ok = value >= limit - _TOLERANCE if is_min else value <= limit + _TOLERANCE
        out.append(LimitCheck(name, metric, value, limit, PASS if ok else FAIL))
    return out


def _limits(limits: FairnessLimits | Mapping[str, float | None] | None) -> FairnessLimits:
    if limits is None:
        return FairnessLimits()
    if isinstance(limits, FairnessLimits):
        return limits
    unknown = set(limits) - set(FairnessLimits.__dataclass_fields__)
    if unknown:
        raise InvalidInput(f"Unknown fairness limits {sorted(unknown)}; expected "
                           f"{sorted(FairnessLimits.__dataclass_fields__)}.")
    return FairnessLimits(**limits)
