"""Drift statistics: pure, vectorised functions and the table that registers them.

A test takes one of two inputs, named in its registration:

- ``samples``: the two sides' finite values, each sorted ascending (float64);
- ``counts``: the two sides' counts over the same categories or bins, aligned.

and returns a :class:`Stat`: the statistic, the p-value where the test has one,
and an effect size on a scale that does not grow with the sample size. Adding
a test is a function here plus one line in :data:`TESTS`.

Each function agrees with scipy's own (``ks_2samp``, ``chi2_contingency``,
``chisquare``, ``wasserstein_distance``, ``jensenshannon``, ``entropy``) or
with the formula in its docstring; ``tests/monitoring/test_stats.py`` checks
that on random inputs. scipy is imported inside the functions that need it:
``import scipy.stats`` alone costs over a second, which a CLI run should only
pay when it needs it (exact KS p-values up to 10,000 rows a side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from keel.monitoring.kolmogorov import kolmogorov_sf

__all__ = ["Stat", "StatTest", "TESTS", "bh_adjust", "chisquare", "chisquare_gof", "hellinger", "jensenshannon",
           "kl_div", "ks", "ks_p_value", "psi", "sturges_edges", "wasserstein", "ztest"]

# scipy's ks_2samp switches from the exact distribution to the asymptotic one here.
_KS_EXACT_MAX_N = 10_000
# A 2 x K chi-square is trusted when every expected count is at least this (Cochran's rule).
_MIN_EXPECTED = 5.0


class Stat(NamedTuple):
    """One test's outcome: ``p_value`` is None for distances, ``effect_size`` is never None."""

    statistic: float
    p_value: float | None
    effect_size: float


# ---------------------------------------------------------------- tests on sorted samples
def ks(ref: np.ndarray, cur: np.ndarray) -> Stat:
    """Two-sample Kolmogorov-Smirnov, two-sided: the same D and p-value as ``scipy.stats.ks_2samp``.

    D is found at the current side's distinct values only (the largest gap
    between two step functions sits at a jump of one of them, and between two
    jumps of the current side the reference's ECDF is monotone), so a new
    window costs ``O(m log n)``, not a pass over the reference. The effect size
    is D itself: the largest difference in the share of rows below any cut-off.
    """
    n, m = len(ref), len(cur)
    values, ends = _runs(cur)
    below = np.searchsorted(ref, values, side="left")
    # Values the reference also holds need the count up to and including them.
    upto = below.copy()
    tied = np.flatnonzero(ref[np.minimum(below, n - 1)] == values)
    if len(tied):
        upto[tied] = np.searchsorted(ref, values[tied], side="right")
    # The largest gap found on exact integers (gap * n * m), then valued as
    # scipy values it: |count_ref / n - count_cur / m|.
    before = np.concatenate(([0], ends[:-1]))
    i = int(np.argmax(np.abs(upto * m - ends * n)))
    k = int(np.argmax(np.abs(below * m - before * n)))
    d = max(abs(upto[i] / n - ends[i] / m), abs(below[k] / n - before[k] / m))
    return Stat(d, ks_p_value(d, n, m), d)


def ks_p_value(d: float, n: int, m: int) -> float:
    """Two-sided p-value of a two-sample KS distance, as ``ks_2samp(method="auto")``.

    Exact up to 10,000 rows a side (scipy's own routine); above, the
    Kolmogorov tail at ``round(n m / (n + m))`` (:mod:`keel.monitoring.kolmogorov`).
    """
    if max(n, m) <= _KS_EXACT_MAX_N:
        from scipy.stats._stats_py import _attempt_exact_2kssamp

        ok, _, p = _attempt_exact_2kssamp(n, m, math.gcd(n, m), d, "two-sided")
        if ok:
            return float(np.clip(p, 0, 1))
    big, small = max(n, m), min(n, m)
    return kolmogorov_sf(d, int(np.round(big * small / (big + small))))


def wasserstein(ref: np.ndarray, cur: np.ndarray) -> Stat:
    """Wasserstein-1 distance divided by the reference's standard deviation (floored at 0.001), as Evidently.

    ``W = integral |F_ref(x) - F_cur(x)| dx`` (``scipy.stats.wasserstein_distance``),
    computed as ``integral_0^1 |Q_ref(u) - Q_cur(u)| du`` over the quantile
    functions of the sorted sides: their steps sit at u = i/n and j/m, whose
    merged order is known in closed form, so no sort or search over the data
    is needed. The statistic is the effect size.
    """
    n, m = len(ref), len(cur)
    # Steps in units of 1/(n m): i m for the reference, j n for the current side.
    # Each step's place in the merged order is its own index plus the other
    # side's steps before it (a reference step first on a tie; ties add zero width).
    i, j = np.arange(1, n + 1, dtype=np.int64), np.arange(1, m + 1, dtype=np.int64)
    steps = np.empty(n + m, dtype=np.int64)
    steps[i - 1 + (i * m - 1) // n] = i * m
    steps[j - 1 + (j * n) // m] = j * n
    widths = np.diff(steps, prepend=0)
    # On (previous step, step] each quantile function is constant: take it at the step.
    gaps = np.abs(ref[-(-steps // m) - 1] - cur[-(-steps // n) - 1])
    distance = float(np.dot(widths, gaps)) / (n * m)
    value = distance / max(float(np.std(ref)), 0.001)
    return Stat(value, None, value)


# ---------------------------------------------------------------- tests on aligned counts
def chisquare(ref: np.ndarray, cur: np.ndarray) -> Stat:
    """Two-sample chi-square on the 2 x K contingency table (``chi2_contingency``, no continuity correction).

    Both sides are samples, so the test allows for the reference's own noise
    (a goodness-of-fit test against reference proportions does not, and
    over-rejects when the reference is small). Categories whose expected count
    is under 5 on either side are pooled, smallest first, until every cell
    expects 5 (Cochran's rule), so many rare categories do not inflate the
    statistic. The effect size is the total variation distance between the
    unpooled proportions: the share of rows that would have to change category.
    """
    ref, cur = np.asarray(ref, np.float64), np.asarray(cur, np.float64)
    table = _pool_rare(np.vstack((ref, cur)))
    effect = _tvd(ref, cur)
    if table.shape[1] < 2:
        return Stat(0.0, 1.0, effect)  # one category (after pooling): nothing can differ
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return Stat(statistic, _chi2_sf(statistic, table.shape[1] - 1), effect)


def _pool_rare(table: np.ndarray) -> np.ndarray:
    totals = table.sum(axis=0)
    keep = totals > 0
    table, totals = table[:, keep], totals[keep]
    if table.shape[1] <= 2:
        return table
    # The expected count of a category on the smaller side; pooling decided
    # by the margins alone keeps the test's level (they are ancillary).
    smaller = table.sum(axis=1).min() / totals.sum()
    order = np.argsort(totals, kind="stable")
    cum = np.cumsum(totals[order]) * smaller
    rare = int(np.count_nonzero(totals[order] * smaller < _MIN_EXPECTED))
    if rare == 0:
        return table
    # Pool the rare ones; if the pool itself is still too small, take the next smallest in.
    k = rare if cum[rare - 1] >= _MIN_EXPECTED else int(np.searchsorted(cum, _MIN_EXPECTED)) + 1
    k = min(max(k, 1), len(order))
    pooled = table[:, order[:k]].sum(axis=1, keepdims=True)
    return np.hstack((table[:, order[k:]], pooled))


def chisquare_gof(ref: np.ndarray, cur: np.ndarray) -> Stat:
    """Evidently's "chisquare": current counts against reference proportions (``scipy.stats.chisquare``).

    A goodness-of-fit test that takes the reference proportions as exact; used
    by ``--preset evidently`` to give Evidently's verdicts. A category absent
    from the reference but present now makes the statistic infinite, p = 0.
    """
    ref, cur = np.asarray(ref, np.float64), np.asarray(cur, np.float64)
    expected = ref * (cur.sum() / ref.sum())
    effect = _tvd(ref, cur)
    if np.any((expected == 0) & (cur > 0)):
        return Stat(math.inf, 0.0, effect)
    used = expected > 0
    statistic = float(np.sum((cur[used] - expected[used]) ** 2 / expected[used]))
    return Stat(statistic, _chi2_sf(statistic, max(int(np.count_nonzero(used)) - 1, 0)), effect)


def ztest(ref: np.ndarray, cur: np.ndarray) -> Stat:
    """Pooled two-proportion Z-test of the first category's share; p = 2 * sf(|z|) (Evidently's formula).

    With two categories it is the chi-square test (z squared is the 2 x 2
    statistic). The effect size is the absolute difference of the two shares.
    """
    ref, cur = np.asarray(ref, np.float64), np.asarray(cur, np.float64)
    n1, n2 = ref.sum(), cur.sum()
    p1, p2 = ref[0] / n1, cur[0] / n2
    pooled = (ref[0] + cur[0]) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance == 0:  # both sides all in, or all out of, the first category
        return Stat(0.0, 1.0, 0.0)
    z = float((p2 - p1) / math.sqrt(variance))
    from scipy.special import ndtr

    return Stat(z, float(2 * ndtr(-abs(z))), float(abs(p1 - p2)))


def jensenshannon(ref: np.ndarray, cur: np.ndarray) -> Stat:
    """Jensen-Shannon distance, natural log: ``sqrt((KL(p||m) + KL(q||m)) / 2)``, ``m = (p + q) / 2``."""
    p, q = _shares(ref), _shares(cur)
    mid = (p + q) / 2
    value = math.sqrt(max((_kl(p, mid) + _kl(q, mid)) / 2, 0.0))
    return Stat(value, None, value)


def psi(ref: np.ndarray, cur: np.ndarray) -> Stat:
    """Population stability index ``sum((p - q) * ln(p / q))`` over shares with empty cells filled (Evidently)."""
    p, q = _fill_zeros(_shares(ref)), _fill_zeros(_shares(cur))
    value = float(np.sum((p - q) * np.log(p / q)))
    return Stat(value, None, value)


def kl_div(ref: np.ndarray, cur: np.ndarray) -> Stat:
    """Kullback-Leibler divergence ``KL(ref || cur)`` (``scipy.stats.entropy``) with empty cells filled (Evidently)."""
    p, q = _fill_zeros(_shares(ref)), _fill_zeros(_shares(cur))
    value = _kl(p / p.sum(), q / q.sum())
    return Stat(value, None, value)


def hellinger(ref: np.ndarray, cur: np.ndarray) -> Stat:
    """Hellinger distance ``sqrt(1 - sum(sqrt(p * q)))``, in [0, 1]."""
    overlap = float(np.clip(np.sum(np.sqrt(_shares(ref) * _shares(cur))), 0, 1))
    value = math.sqrt(1 - overlap)
    return Stat(value, None, value)


# ---------------------------------------------------------------- shared pieces
def bh_adjust(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (``scipy.stats.false_discovery_control``).

    Rejecting every hypothesis whose adjusted p-value is at most q keeps the
    expected share of false discoveries among the rejections at most q.
    """
    p = np.asarray(p_values, np.float64)
    if p.size == 0:
        return p
    order = np.argsort(p)[::-1]
    ranks = np.arange(p.size, 0, -1)
    adjusted = np.minimum.accumulate(p[order] * p.size / ranks)
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def sturges_edges(lo: float, hi: float, size: int, integer: bool = False) -> np.ndarray:
    """``np.histogram_bin_edges(data, bins="sturges")`` from the data's extremes and size alone."""
    if lo == hi:
        return np.linspace(lo - 0.5, hi + 0.5, 2)
    width = (hi - lo) / (np.log2(size) + 1.0)
    if integer and width < 1:
        width = 1
    return np.linspace(lo, hi, int(np.ceil((hi - lo) / width)) + 1)


def histogram(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(values, edges)[0]`` for sorted values: [a, b) bins, the last one closed."""
    cuts = np.searchsorted(ordered, edges, side="left")
    cuts[-1] = np.searchsorted(ordered, edges[-1], side="right")
    return np.diff(cuts)


def _runs(ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a sorted array and the cumulative count up to each (inclusive)."""
    step = ordered[1:] != ordered[:-1]
    if step.all():  # no ties: every value is its own run
        return ordered, np.arange(1, len(ordered) + 1)
    ends = np.append(np.flatnonzero(step) + 1, len(ordered))
    return ordered[ends - 1], ends


def _chi2_sf(statistic: float, dof: int) -> float:
    if dof <= 0:
        return 1.0
    from scipy.special import chdtrc

    return float(chdtrc(dof, statistic))


def _shares(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, np.float64)
    return counts / counts.sum()


def _tvd(ref: np.ndarray, cur: np.ndarray) -> float:
    return float(np.sum(np.abs(_shares(ref) - _shares(cur))) / 2)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    # x * log(x / y), 0 where x is 0 (scipy.special.rel_entr); q > 0 wherever p > 0 here.
    used = p > 0
    return float(np.sum(p[used] * np.log(p[used] / q[used])))


def _fill_zeros(shares: np.ndarray) -> np.ndarray:
    # Evidently's fill: an empty cell gets 1e-4, or a millionth of the smallest
    # non-empty share where that is itself at most 1e-4, so the logs stay finite.
    smallest = shares[shares > 0].min()
    return np.where(shares == 0, smallest / 1e6 if smallest <= 1e-4 else 1e-4, shares)


# ---------------------------------------------------------------- registration
@dataclass(frozen=True)
class StatTest:
    """A registered test.

    Attributes:
        name: What ``--test COLUMN=NAME`` and the JSON call it.
        fn: The function.
        data: ``"samples"`` (sorted values; numeric columns only) or ``"counts"``.
        p_value: True when the verdict compares a p-value (drift when at most the
            threshold), False when it compares a distance (drift when at least).
        threshold: The default threshold (Evidently's).
        effect: What the effect size measures.
        bins: How a numeric column with many distinct values is binned for a
            counts test: ``"sturges"`` over both sides' values, or
            ``"sturges_unique"`` over their distinct values (Evidently's Hellinger).
    """

    name: str
    fn: Callable[[np.ndarray, np.ndarray], Stat]
    data: str
    p_value: bool
    threshold: float
    effect: str
    bins: str = "sturges"


TESTS: dict[str, StatTest] = {t.name: t for t in (
    StatTest("ks", ks, "samples", True, 0.05, "ks_distance"),
    StatTest("wasserstein", wasserstein, "samples", False, 0.1, "wasserstein_normed"),
    StatTest("chisquare", chisquare, "counts", True, 0.05, "total_variation"),
    StatTest("chisquare_gof", chisquare_gof, "counts", True, 0.05, "total_variation"),
    StatTest("z", ztest, "counts", True, 0.05, "proportion_difference"),
    StatTest("jensenshannon", jensenshannon, "counts", False, 0.1, "jensenshannon"),
    StatTest("psi", psi, "counts", False, 0.1, "psi"),
    StatTest("kl_div", kl_div, "counts", False, 0.1, "kl_div"),
    StatTest("hellinger", hellinger, "counts", False, 0.1, "hellinger", bins="sturges_unique"),
)}
