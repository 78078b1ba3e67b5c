"""Data quality of a current column against its reference, and the shares plotted for it.

Pure functions of two :class:`~keel.monitoring.columns.ColumnSummary` objects:
missing values, values outside the reference's range, categories the
reference never saw; and a small histogram (reference vs current shares) that
the JSON carries and the HTML report draws.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.compute as pc

from keel.monitoring.columns import CATEGORICAL, DATETIME, NUMERIC, ColumnSummary, aligned_counts, comparable
from keel.monitoring.result import ColumnQuality

__all__ = ["column_quality", "histogram"]

_BINS = 24
_TOP_CATEGORIES = 10
# Numeric columns with at most this many distinct values on both sides are plotted as bars per value.
_PLOT_VALUES = 20
# Plots span these quantiles of both sides, so one extreme value does not squash the rest;
# the end bins hold everything beyond.
_PLOT_TAIL = 0.005


def column_quality(ref: ColumnSummary, cur: ColumnSummary, cur_rows: int) -> ColumnQuality:
    """Missing shares on both sides; out-of-range share or unseen categories where the kinds allow."""
    quality: dict[str, Any] = {
        "missing_share_reference": ref.missing / ref.rows if ref.rows else None,
        "missing_share_current": cur.missing / cur_rows if cur_rows else None,
        "non_finite_current": cur.non_finite}
    if not comparable(ref, cur):
        return ColumnQuality(**quality)
    if ref.kind in (NUMERIC, DATETIME) and len(ref.values) and len(cur.values):
        below = np.searchsorted(cur.values, ref.values[0], side="left")
        above = len(cur.values) - np.searchsorted(cur.values, ref.values[-1], side="right")
        quality["out_of_range_share"] = float((below + above) / len(cur.values))
    elif ref.kind == CATEGORICAL and ref.categories is not None and cur.categories is not None:
        cats = cur.categories
        if cats.type != ref.categories.type:
            cats = cats.cast(ref.categories.type)
        unseen = np.flatnonzero(~pc.is_in(cats, value_set=ref.categories).to_numpy(zero_copy_only=False))
        quality["unseen_categories"] = len(unseen)
        quality["unseen_share"] = float(cur.counts[unseen].sum() / cur.present) if cur.present else 0.0
        top = unseen[np.argsort(-cur.counts[unseen], kind="stable")[:5]]
        quality["unseen_examples"] = [str(v) for v in cats.take(top).to_pylist()]
    return ColumnQuality(**quality)


def histogram(ref: ColumnSummary, cur: ColumnSummary) -> dict[str, Any] | None:
    """Reference and current shares over common bins or categories, for plots; None if there is nothing to plot."""
    if not comparable(ref, cur) or not ref.present or not cur.present:
        return None
    if ref.kind in (NUMERIC, DATETIME):
        if not (len(ref.values) and len(cur.values)):
            return None
        if ref.n_unique <= _PLOT_VALUES and cur.n_unique <= _PLOT_VALUES:
            return _categories(ref, cur)
        return _bins(ref.values, cur.values)
    return _categories(ref, cur) if ref.kind == CATEGORICAL else None


def _bins(ref: np.ndarray, cur: np.ndarray) -> dict[str, Any]:
    lo = min(_quantile(ref, _PLOT_TAIL), _quantile(cur, _PLOT_TAIL))
    hi = max(_quantile(ref, 1 - _PLOT_TAIL), _quantile(cur, 1 - _PLOT_TAIL))
    if lo == hi:
        lo, hi = min(ref[0], cur[0]), max(ref[-1], cur[-1])
    edges = np.linspace(lo, hi, _BINS + 1) if lo < hi else np.array([lo, hi])

    def shares(values: np.ndarray) -> list[float]:
        cuts = np.searchsorted(values, edges, side="left")
        cuts[0], cuts[-1] = 0, len(values)  # the end bins take the tails
        return _round(np.diff(cuts) / len(values))

    return {"kind": "bins", "edges": [float(f"{e:.6g}") for e in edges], "reference": shares(ref),
            "current": shares(cur)}


def _categories(ref: ColumnSummary, cur: ColumnSummary) -> dict[str, Any]:
    keys, r, c = aligned_counts(ref, cur)
    r_share, c_share = r / max(r.sum(), 1), c / max(c.sum(), 1)
    top = np.argsort(-np.maximum(r_share, c_share), kind="stable")[:_TOP_CATEGORIES]
    top = np.sort(top)  # keep the categories' own order
    labels = [_label(v) for v in keys.take(top).to_pylist()]
    ref_shares, cur_shares = list(r_share[top]), list(c_share[top])
    if len(keys) > len(top):
        labels.append(f"({len(keys) - len(top)} others)")
        ref_shares.append(1 - sum(ref_shares))
        cur_shares.append(1 - sum(cur_shares))
    return {"kind": "categories", "labels": labels, "reference": _round(ref_shares), "current": _round(cur_shares)}


def _quantile(ordered: np.ndarray, q: float) -> float:
    return float(ordered[int(q * (len(ordered) - 1))])


def _label(value: Any) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _round(values: Any) -> list[float]:
    return [round(max(float(v), 0.0), 5) for v in values]
