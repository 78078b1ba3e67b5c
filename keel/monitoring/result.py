"""The drift result: plain frozen dataclasses and their JSON form, schema ``keel.drift/1``.

The schema is documented in docs/monitoring.md. It only grows: later
monitors (performance, fairness, windows over served traffic) add top-level
keys, and columns carry a ``role`` (``feature`` today; ``prediction`` and
``target`` later) so prediction drift is one more column.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel.monitoring.harm import FairnessResult, PerformanceResult

__all__ = ["SCHEMA", "ColumnDrift", "ColumnQuality", "ColumnResult", "DatasetDrift", "DriftResult"]

SCHEMA = "keel.drift/1"
DRIFT, NO_DRIFT, NOT_TESTED = "drift", "no_drift", "not_tested"


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift test.

    Attributes:
        status: ``drift``, ``no_drift`` or ``not_tested`` (``reason`` says why).
        test: Registered test name (``keel.monitoring.stats.TESTS``), None if not tested.
        statistic: The test's statistic (None when infinite; ``reason`` says why).
        p_value: Raw p-value; None for distances.
        p_adjusted: Benjamini-Hochberg adjusted p-value (default preset), else None.
        effect_size: Effect size on the scale ``effect_measure`` names.
        effect_measure: ``ks_distance``, ``total_variation``, ``proportion_difference``,
            ``wasserstein_normed``, ``jensenshannon``, ``psi``, ``kl_div`` or ``hellinger``.
        threshold: What the verdict compares against.
        threshold_on: ``p_adjusted``, ``p_value`` or ``statistic``.
        min_effect: The minimum effect size a drift verdict also needs, if set.
        reason: Why a column was not tested, or a note on the verdict.
    """

    status: str
    test: str | None = None
    statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    effect_size: float | None = None
    effect_measure: str | None = None
    threshold: float | None = None
    threshold_on: str | None = None
    min_effect: float | None = None
    reason: str | None = None

    @property
    def detected(self) -> bool:
        return self.status == DRIFT


@dataclass(frozen=True)
class ColumnQuality:
    """Data quality of one column in the current data, against the reference.

    Attributes:
        missing_share_reference: Share of reference rows with no value (null or NaN).
        missing_share_current: The same in the current data.
        non_finite_current: Infinite values in the current data (numeric).
        out_of_range_share: Share of current finite values outside the reference's
            [min, max] (numeric, datetime), else None.
        unseen_categories: Distinct current categories absent from the reference (categorical).
        unseen_share: Share of current non-missing rows holding one of them.
        unseen_examples: Up to 5 of them, as text.
    """

    missing_share_reference: float | None
    missing_share_current: float | None
    non_finite_current: int = 0
    out_of_range_share: float | None = None
    unseen_categories: int | None = None
    unseen_share: float | None = None
    unseen_examples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ColumnResult:
    """Everything about one reference column.

    Attributes:
        name: Column name.
        kind: ``numeric``, ``categorical``, ``datetime``, ``empty`` or ``other`` (reference side).
        type_reference: Arrow type in the reference.
        type_current: Arrow type in the current data; None when the column is missing there.
        schema: ``ok``, ``missing`` (absent from current) or ``type_changed``.
        drift: The test and its verdict.
        quality: Data quality.
        histogram: Reference vs current shares for plots: ``{"kind": "bins", "edges",
            "reference", "current"}`` or ``{"kind": "categories", "labels", ...}``; None if not plotted.
        role: ``feature`` (later: ``prediction``, ``target``).
    """

    name: str
    kind: str
    type_reference: str
    type_current: str | None
    schema: str
    drift: ColumnDrift
    quality: ColumnQuality | None
    histogram: dict[str, Any] | None = None
    role: str = "feature"


@dataclass(frozen=True)
class DatasetDrift:
    """Dataset drift: the share of tested columns that drift, against a threshold (``share >= threshold``)."""

    detected: bool
    drifted_columns: int
    tested_columns: int
    share: float | None
    threshold: float


@dataclass(frozen=True)
class DriftResult:
    """The outcome of comparing a current dataset or window with a reference.

    Attributes:
        preset: ``default`` or ``evidently``.
        settings: The options that decided the verdicts (fdr, min_effect, drift_share, overrides).
        reference: ``{"rows", "columns", "source"}``.
        current: The same for the current data.
        dataset_drift: The dataset-level verdict.
        schema_changes: ``{"missing_columns", "extra_columns", "type_changes": [{"column", "reference", "current"}]}``.
        columns: One result per reference column, in reference order.
        performance: Model performance once labels arrive (``keel.monitoring.performance``), if computed.
        fairness: Fairness across a sensitive column's groups (``keel.monitoring.fairness``), if computed.
    """

    preset: str
    settings: dict[str, Any]
    reference: dict[str, Any]
    current: dict[str, Any]
    dataset_drift: DatasetDrift
    schema_changes: dict[str, Any]
    columns: list[ColumnResult]
    performance: PerformanceResult | None = None
    fairness: FairnessResult | None = None

    @property
    def drifted(self) -> list[str]:
        """Names of the columns whose verdict is drift."""
        return [c.name for c in self.columns if c.drift.detected]

    @property
    def schema_ok(self) -> bool:
        """No reference column is missing from, or changed kind in, the current data."""
        return not (self.schema_changes["missing_columns"] or self.schema_changes["type_changes"])

    def column(self, name: str) -> ColumnResult:
        return next(c for c in self.columns if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: strict JSON (infinite or NaN numbers become null).

        ``performance`` and ``fairness`` appear only when computed, so a
        drift-only result keeps exactly its earlier keys.
        """
        body = asdict(replace(self, performance=None, fairness=None))
        del body["performance"], body["fairness"]
        doc = clean({"schema": SCHEMA, "kind": "data_drift", **body,
                      "drifted_columns": self.drifted, "schema_ok": self.schema_ok})
        for key in ("performance", "fairness"):
            if getattr(self, key) is not None:
                doc[key] = getattr(self, key).to_dict()
        return doc


def clean(value: Any) -> Any:
    """Strict JSON: non-finite floats become None, numpy scalars plain Python."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):  # numpy scalar
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value
