"""The drift engine: which test per column, verdicts, dataset drift and data quality.

Two presets choose the test for each column:

``default`` (keel's rule):
    numeric columns with more than 20 distinct reference values get the
    Kolmogorov-Smirnov test; other numeric columns, booleans and categories
    get the two-sample chi-square on the contingency table (the Z-test when
    there are two categories, which is the same test). Every p-value is then
    adjusted with Benjamini-Hochberg across the columns, and a column drifts
    when its adjusted p-value is at most the false-discovery rate (``fdr``,
    0.05) and, if ``min_effect`` is set, its effect size reaches it. Under no
    drift at all, the chance that any column is flagged is at most ``fdr``;
    a shift the data shows beyond doubt is flagged however small its distance,
    and its effect size says how large it is.

``evidently``:
    Evidently's own choice per column (by its column typing, reference size
    and number of distinct values) and its thresholds, without correction
    across columns, so a team moving over gets Evidently's verdicts.

Any column can be given another test (``tests={"col": "psi"}``) or threshold.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Sequence

import numpy as np
from keel.errors import InvalidInput
from keel.monitoring import stats
from keel.monitoring.columns import (CATEGORICAL, DATETIME, EMPTY, NUMERIC, ColumnSummary, Summary, aligned_counts,
                                     comparable, summarize)
from keel.monitoring.quality import column_quality, histogram
from keel.monitoring.result import (DRIFT, NO_DRIFT, NOT_TESTED, ColumnDrift, ColumnResult, DatasetDrift,
                                    DriftResult)

__all__ = ["PRESETS", "detect_drift"]

PRESETS = ("default", "evidently")
# More distinct reference values than this and a numeric column is continuous (KS);
# at most this many and it is tested as categories.
DISCRETE_MAX = 20
# Evidently's column typing: integer columns with at most this many values are categories.
_EVIDENTLY_INT_CATEGORIES = 10


def detect_drift(reference: Any, current: Any, *, preset: str = "default", fdr: float = 0.05,
                 min_effect: float | None = None, drift_share: float = 0.5,
                 tests: Mapping[str, str] | None = None, thresholds: Mapping[str, float] | None = None,
                 ignore: Sequence[str] = ()) -> DriftResult:
    """Compare ``current`` with ``reference`` column by column.

    Args:
        reference: A :class:`~keel.monitoring.columns.Summary` (computed once,
            reused for every window), or anything ``summarize`` takes: a path
            to a CSV/Parquet file, a pyarrow/pandas/polars table, a dict of columns.
        current: The same, for the data to check.
        preset: ``default`` or ``evidently`` (see the module docstring).
        fdr: Default preset: the false-discovery rate that adjusted p-values are compared with.
        min_effect: A drift verdict also needs an effect size at least this large.
        drift_share: Dataset drift when at least this share of tested columns drift.
        tests: Per-column test, by registered name (``keel.monitoring.stats.TESTS``).
        thresholds: Per-column threshold (a p-value level or a distance, by test).
        ignore: Columns to leave out.

    Returns:
        The result; ``result.to_dict()`` is its JSON form.

    Raises:
        InvalidInput: An empty side, an unknown preset, test or column in the
            options, or a test that cannot run on a column's kind.
    """
    tests, thresholds = dict(tests or {}), dict(thresholds or {})
    _check_options(preset, fdr, min_effect, drift_share, tests, thresholds)
    # Both sides at once: reading and sorting run in Arrow and numpy, outside the GIL.
    with ThreadPoolExecutor(2) as pool:
        ref_job = pool.submit(summarize, reference, what="reference")
        cur_job = pool.submit(summarize, current, what="current")
        ref, cur = ref_job.result(), cur_job.result()
    for side, summary in (("reference", ref), ("current", cur)):
        if summary.rows == 0:
            raise InvalidInput(f"the {side} data has no rows ({summary.source or 'in memory'}); "
                               f"drift needs at least one row on each side")
    unknown = sorted((set(tests) | set(thresholds)) - set(ref.columns))
    if unknown:
        raise InvalidInput(f"--test/--threshold name columns not in the reference: {unknown}; "
                           f"reference columns: {list(ref.columns)}")
    names = [n for n in ref.columns if n not in set(ignore)]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        raw = list(pool.map(lambda n: _column(ref.columns[n], cur.columns.get(n), cur.rows, preset, tests.get(n),
                                              thresholds.get(n)), names))
    drifts = _verdicts([r[1] for r in raw], preset, fdr, min_effect)
    columns = []
    for name, (schema, _), verdict in zip(names, raw, drifts):
        r, c = ref.columns[name], cur.columns.get(name)
        columns.append(ColumnResult(name, r.kind, r.type, c.type if c else None, schema, verdict,
                                    column_quality(r, c, cur.rows) if c else None, histogram(r, c) if c else None))
    tested = [c for c in columns if c.drift.status != NOT_TESTED]
    drifted = sum(c.drift.detected for c in tested)
    share = drifted / len(tested) if tested else None
    dataset = DatasetDrift(share is not None and share >= drift_share, drifted, len(tested), share, drift_share)
    settings = {"fdr": fdr if preset == "default" else None, "min_effect": min_effect, "drift_share": drift_share,
                "tests": tests, "thresholds": thresholds, "ignore": list(ignore)}
    schema_changes = {
        "missing_columns": [c.name for c in columns if c.schema == "missing"],
        "extra_columns": [n for n in cur.columns if n not in ref.columns],
        "type_changes": [{"column": c.name, "reference": c.type_reference, "current": c.type_current}
                         for c in columns if c.schema == "type_changed"]}
    return DriftResult(preset, settings, _side(ref), _side(cur), dataset, schema_changes, columns)


def _check_options(preset: str, fdr: float, min_effect: float | None, drift_share: float,
                   tests: dict[str, str], thresholds: dict[str, float]) -> None:
    if preset not in PRESETS:
        raise InvalidInput(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    if not 0 < fdr < 1:
        raise InvalidInput(f"fdr must be between 0 and 1, got {fdr}")
    if min_effect is not None and not (math.isfinite(min_effect) and min_effect >= 0):
        raise InvalidInput(f"min_effect must be a number >= 0, got {min_effect}")
    if not 0 < drift_share <= 1:
        raise InvalidInput(f"drift_share must be in (0, 1], got {drift_share}")
    bad = {c: t for c, t in tests.items() if t not in stats.TESTS}
    if bad:
        raise InvalidInput(f"unknown test(s) {bad}; registered tests: {sorted(stats.TESTS)}")
    bad_t = {c: v for c, v in thresholds.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)}
    if bad_t:
        raise InvalidInput(f"thresholds must be finite numbers >= 0, got {bad_t}")


def _side(summary: Summary) -> dict[str, Any]:
    return {"rows": summary.rows, "columns": len(summary.columns), "source": summary.source}


# ---------------------------------------------------------------- one column
class _Raw(dict):
    """A column's test outcome before the verdict (which needs every column's p-value)."""


def _column(ref: ColumnSummary, cur: ColumnSummary | None, cur_rows: int, preset: str, test_name: str | None,
            threshold: float | None) -> tuple[str, _Raw]:
    if cur is None:
        return "missing", _Raw(reason="column missing from the current data")
    if ref.kind == EMPTY or ref.present == 0:
        return "ok", _Raw(reason="no values in the reference (all missing)")
    if cur.kind == EMPTY or cur.present == 0:
        return "ok", _Raw(reason=f"no values in the current data (all {cur_rows} rows missing)")
    if not comparable(ref, cur):
        return "type_changed", _Raw(reason=f"type changed from {ref.type} to {cur.type}")
    numerical, reason = _typing(ref, preset)
    if test_name is None:
        if reason:
            return "ok", _Raw(reason=reason)
        test_name = _choose(ref, cur, numerical, preset)
    if test_name is None:
        return "ok", _Raw(reason=f"no default test for {ref.kind} columns; set one with --test")
    test = stats.TESTS[test_name]
    if test.data == "samples" and ref.kind not in (NUMERIC, DATETIME):
        raise InvalidInput(f"test {test_name!r} needs numeric values; column {ref.name!r} is {ref.kind} "
                           f"({ref.type}). Use a counts test: chisquare, z, jensenshannon, psi, kl_div, hellinger")
    if ref.values is not None and not (len(ref.values) and len(cur.values)):
        side = "reference" if not len(ref.values) else "current data"
        return "ok", _Raw(reason=f"no finite values in the {side} (only infinite ones)")
    if test.data == "samples":
        result = test.fn(ref.values, cur.values)
    else:
        result = test.fn(*_counts(ref, cur, numerical, test))
    return "ok", _Raw(test=test, stat=result, threshold=threshold)


def _typing(ref: ColumnSummary, preset: str) -> tuple[bool, str | None]:
    """Whether the preset treats the column as numerical, and why it is not tested by default (if so)."""
    if ref.kind == DATETIME:
        return True, "datetime column: not tested by default (time moves on); set a test with --test"
    if ref.kind not in (NUMERIC, CATEGORICAL):
        return False, f"{ref.type} column: no default test"
    if preset == "evidently":
        if ref.kind == NUMERIC:
            # pandas holds an integer column with missing values as float, which Evidently calls numerical.
            categorical = ref.integer and ref.missing == 0 and ref.n_unique <= _EVIDENTLY_INT_CATEGORIES
            return not categorical, None
        if ref.type != "bool" and ref.n_unique > 0.5 * ref.present:
            return False, ("text column (most values distinct): Evidently's text drift trains a classifier, "
                           "which keel does not; set a test with --test")
        return False, None
    if ref.kind == CATEGORICAL and ref.type != "bool" and ref.n_unique > max(50, 0.5 * ref.present):
        return False, f"identifier or free text ({ref.n_unique} distinct values): not tested; set a test with --test"
    return ref.kind == NUMERIC, None


def _choose(ref: ColumnSummary, cur: ColumnSummary, numerical: bool, preset: str) -> str:
    if preset == "default":
        if numerical and ref.n_unique > DISCRETE_MAX:
            return "ks"
        return "z" if _union_size(ref, cur, 3) <= 2 else "chisquare"
    # Evidently: by reference size (after dropping missing and infinite values)
    # and by distinct values over both sides.
    values = _union_size(ref, cur, 6)
    size = len(ref.values) if ref.kind == NUMERIC else ref.present
    if size <= 1000:
        if numerical and values > 5:
            return "ks"
        return "chisquare_gof" if values > 2 else "z"
    return "wasserstein" if numerical and values > 5 else "jensenshannon"


def _union_size(ref: ColumnSummary, cur: ColumnSummary, enough: int) -> int:
    """Distinct values over both sides, counted exactly up to ``enough`` (a cheap bound above it)."""
    if ref.n_unique >= enough or cur.n_unique >= enough:
        return max(ref.n_unique, cur.n_unique)
    keys, _, _ = aligned_counts(ref, cur)
    return len(keys)


def _counts(ref: ColumnSummary, cur: ColumnSummary, numerical: bool,
            test: stats.StatTest) -> tuple[np.ndarray, np.ndarray]:
    """Aligned counts: per category, or per Sturges bin for a numerical column with many values."""
    if numerical and (test.bins == "sturges_unique" or ref.n_unique > DISCRETE_MAX):
        lo, hi = min(ref.values[0], cur.values[0]), max(ref.values[-1], cur.values[-1])
        # Evidently bins the concatenated values (integers keep bins at least 1 wide).
        integer = ref.integer and cur.integer and ref.missing == 0 and cur.missing == 0
        size = len(aligned_counts(ref, cur)[0]) if test.bins == "sturges_unique" else len(ref.values) + len(cur.values)
        edges = stats.sturges_edges(lo, hi, size, integer)
        return stats.histogram(ref.values, edges), stats.histogram(cur.values, edges)
    _, r, c = aligned_counts(ref, cur)
    return r, c


# ---------------------------------------------------------------- verdicts
def _verdicts(raws: list[_Raw], preset: str, fdr: float, min_effect: float | None) -> list[ColumnDrift]:
    tested = [i for i, r in enumerate(raws) if "test" in r]
    adjusted: dict[int, float] = {}
    if preset == "default":
        with_p = [i for i in tested if raws[i]["test"].p_value]
        for i, p in zip(with_p, stats.bh_adjust(np.array([raws[i]["stat"].p_value for i in with_p]))):
            adjusted[i] = float(p)
    out = []
    for i, raw in enumerate(raws):
        if "test" not in raw:
            out.append(ColumnDrift(NOT_TESTED, reason=raw.get("reason")))
            continue
        test, stat = raw["test"], raw["stat"]
        threshold = raw["threshold"]
        if test.p_value:
            on = "p_adjusted" if i in adjusted else "p_value"
            threshold = threshold if threshold is not None else fdr if on == "p_adjusted" else test.threshold
            value = adjusted.get(i, stat.p_value)
            # Evidently: "p <= threshold" for KS, "p < threshold" for its other tests.
            strict = preset == "evidently" and test.name != "ks"
            hit = value < threshold if strict else value <= threshold
        else:
            on, threshold = "statistic", threshold if threshold is not None else test.threshold
            hit = stat.statistic >= threshold
        big_enough = min_effect is None or stat.effect_size >= min_effect
        note = None
        if math.isinf(stat.statistic):
            note = "statistic is infinite: a category absent from the reference appears in the current data"
        elif hit and not big_enough:
            note = f"significant, but effect size {stat.effect_size:.4g} is under min_effect {min_effect}"
        out.append(ColumnDrift(DRIFT if hit and big_enough else NO_DRIFT, test.name, float(stat.statistic),
                               stat.p_value, adjusted.get(i), float(stat.effect_size), test.effect, threshold, on,
                               min_effect, note))
    return out
