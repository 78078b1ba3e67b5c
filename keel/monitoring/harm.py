"""Results of the harm monitors: model performance once labels arrive, and fairness across groups.

Plain frozen dataclasses, computed by :mod:`keel.monitoring.performance` and
:mod:`keel.monitoring.fairness`. Their ``to_dict()`` forms are the top-level
``performance`` and ``fairness`` keys of the ``keel.drift/1`` JSON (present
only when computed), documented in docs/monitoring.md. Numbers are never NaN
or infinite there: an undefined metric is null and ``notes`` says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from keel.monitoring.result import clean

__all__ = ["FairnessResult", "GroupMetrics", "LimitCheck", "MetricComparison", "PerformanceComparison",
           "PerformanceResult"]

PASS, FAIL, NOT_JUDGED = "pass", "fail", "not_judged"


@dataclass(frozen=True)
class MetricComparison:
    """One metric, current against reference.

    Attributes:
        metric: Metric name (``accuracy``, ``f1``, ``mae``, ...).
        reference: The reference value (at training, or an earlier window).
        current: The current value.
        difference: ``current - reference``.
        degradation: How much worse the current value is, positive when worse:
            ``reference - current`` for scores (higher is better), ``(current -
            reference) / reference`` for errors (lower is better: MAE, RMSE,
            log loss, MAPE), whose scale depends on the target's units.
        limit: The largest degradation that passes.
        limit_kind: ``absolute_drop`` (scores) or ``relative_increase`` (errors).
        status: ``pass``, ``fail`` or ``not_judged`` (``reason`` says why).
        reason: Why a metric was not judged.
    """

    metric: str
    reference: float | None
    current: float | None
    difference: float | None
    degradation: float | None
    limit: float | None
    limit_kind: str
    status: str
    reason: str | None = None


@dataclass(frozen=True)
class PerformanceComparison:
    """Current performance against a reference: ``degraded`` when any metric fails its limit."""

    degraded: bool
    max_drop: float
    max_error_increase: float
    metrics: list[MetricComparison]


@dataclass(frozen=True)
class PerformanceResult:
    """Model performance on rows whose label has arrived.

    Attributes:
        task: ``binary``, ``multiclass`` or ``regression``.
        rows: Rows evaluated (both a label and a prediction).
        metrics: Classification: ``accuracy``, ``precision``, ``recall``, ``f1``,
            ``roc_auc``, ``log_loss``; regression: ``mae``, ``rmse``, ``r2``,
            ``mape``. None when undefined on these rows (``notes`` says why).
        notes: Metric name -> why it is None, or how it was computed here.
        average: ``binary`` (metrics of ``pos_label``) or ``macro`` (the
            unweighted mean over classes), None for regression.
        pos_label: The positive class (binary).
        labels: The classes: the model's (``labels=``) then any unseen ones.
        per_class: Multiclass: ``{"label", "support", "precision", "recall", "f1", "roc_auc"}`` per class.
        unseen_labels: ``{"label", "true_count", "pred_count"}`` for each label
            outside the model's ``labels``.
        rows_missing_label: Rows left out because their label has not arrived (null or NaN).
        rows_missing_prediction: Rows left out because their prediction is null or NaN.
        comparison: Against a reference, if one was given.
    """

    task: str
    rows: int
    metrics: dict[str, float | None]
    notes: dict[str, str] = field(default_factory=dict)
    average: str | None = None
    pos_label: Any = None
    labels: list[Any] = field(default_factory=list)
    per_class: list[dict[str, Any]] = field(default_factory=list)
    unseen_labels: list[dict[str, Any]] = field(default_factory=list)
    rows_missing_label: int = 0
    rows_missing_prediction: int = 0
    comparison: PerformanceComparison | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (key ``performance`` of ``keel.drift/1``)."""
        return clean(asdict(self))


@dataclass(frozen=True)
class GroupMetrics:
    """One group of the sensitive column (or all rows, for ``overall``).

    Attributes:
        group: The group's value, as text (``(missing)`` for null).
        count: Rows in the group.
        share: The group's share of all rows.
        selection_rate: Share of the group's rows predicted ``pos_label``.
        labelled: Rows whose label has arrived (the denominator of the metrics below).
        positives: Labelled rows whose label is ``pos_label``.
        accuracy: Share of labelled rows predicted right (``pos_label`` or not).
        tpr: True positive rate P(pred = pos | label = pos); None without positives.
        fpr: False positive rate P(pred = pos | label != pos); None without negatives.
        precision: P(label = pos | pred = pos); None without positive predictions.
        roc_auc: From the scores, when given and the group has both classes.
        too_small: Fewer rows than ``min_group_size``: reported, not judged.
    """

    group: str
    count: int
    share: float
    selection_rate: float
    labelled: int = 0
    positives: int = 0
    accuracy: float | None = None
    tpr: float | None = None
    fpr: float | None = None
    precision: float | None = None
    roc_auc: float | None = None
    too_small: bool = False


@dataclass(frozen=True)
class LimitCheck:
    """One fairness limit and its verdict.

    Attributes:
        name: The limit's name (``max_parity_difference``, ``min_parity_ratio``,
            ``max_equalized_odds_difference``).
        metric: The metric it bounds.
        value: The metric's value (None when it cannot be judged).
        limit: The bound.
        status: ``pass``, ``fail`` or ``not_judged`` (``reason`` says why).
        reason: Why it was not judged.
    """

    name: str
    metric: str
    value: float | None
    limit: float
    status: str
    reason: str | None = None


@dataclass(frozen=True)
class FairnessResult:
    """Fairness of binary decisions across the groups of a sensitive column.

    Differences and ratios are taken between groups with at least
    ``min_group_size`` rows (``groups_judged``); smaller groups are listed
    with ``too_small`` and left out of them.

    Attributes:
        sensitive: Name of the sensitive column, if known.
        pos_label: The favourable prediction whose rate is compared.
        min_group_size: Groups with fewer rows are not judged.
        rows: Rows with a prediction.
        groups: One entry per group, largest first.
        overall: The same metrics over all rows.
        groups_judged: Groups large enough to judge.
        demographic_parity_difference: Largest minus smallest selection rate.
        demographic_parity_ratio: Smallest over largest selection rate.
        true_positive_rate_difference: Largest minus smallest TPR (equal opportunity difference).
        false_positive_rate_difference: Largest minus smallest FPR.
        equalized_odds_difference: The larger of the two above.
        checks: One verdict per limit set.
        status: ``fail`` if any check fails, ``pass`` if any passes and none
            fails, ``not_judged`` otherwise.
        notes: Metric name -> why it is None.
    """

    sensitive: str | None
    pos_label: Any
    min_group_size: int
    rows: int
    groups: list[GroupMetrics]
    overall: GroupMetrics
    groups_judged: int
    demographic_parity_difference: float | None
    demographic_parity_ratio: float | None
    true_positive_rate_difference: float | None
    false_positive_rate_difference: float | None
    equalized_odds_difference: float | None
    checks: list[LimitCheck]
    status: str
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """No limit failed (limits that could not be judged do not fail)."""
        return self.status != FAIL

    def group(self, name: str) -> GroupMetrics:
        return next(g for g in self.groups if g.group == name)

    def check(self, name: str) -> LimitCheck:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (key ``fairness`` of ``keel.drift/1``)."""
        return clean({**asdict(self), "passed": self.passed})
