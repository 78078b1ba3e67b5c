"""Each drift statistic agrees with scipy's (or the formula in its docstring) on random inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as ss
from scipy.spatial.distance import jensenshannon as scipy_js

from keel.monitoring import kolmogorov, stats


def _sorted(rng: np.random.Generator, n: int, shift: float = 0.0, decimals: int | None = None) -> np.ndarray:
    x = rng.normal(shift, 1, n)
    return np.sort(np.round(x, decimals) if decimals is not None else x)


@pytest.mark.parametrize("n,m,shift,decimals", [
    (1, 1, 0.0, None), (3, 7, 0.0, None), (100, 130, 0.3, None), (500, 500, 0.0, 1),  # ties on both sides
    (5000, 10000, 0.05, None),  # exact, unequal sizes
    (10001, 12000, 0.0, None),  # asymptotic, no drift
    (20000, 30000, 0.06, None),  # asymptotic, Smirnov tail summed here
    (40000, 40000, 0.2, 2),  # very small p, ties
    (200, 300000, 0.0, 0),  # heavy ties, one side large
])
def test_ks_matches_scipy(n: int, m: int, shift: float, decimals: int | None) -> None:
    rng = np.random.default_rng(n + m)
    ref, cur = _sorted(rng, n, 0.0, decimals), _sorted(rng, m, shift, decimals)
    expected = ss.ks_2samp(ref, cur)
    got = stats.ks(ref, cur)
    assert got.statistic == pytest.approx(expected.statistic, rel=1e-12, abs=1e-15)
    assert got.p_value == pytest.approx(expected.pvalue, rel=1e-8, abs=1e-300)
    assert got.effect_size == got.statistic


@pytest.mark.parametrize("n", [10001, 20000, 100000, 100001, 500000])
def test_kolmogorov_tail_matches_scipy_on_every_branch(n: int) -> None:
    # n d from under 1/2 to n; n d^2 across 2.2 and 370; d across 0.5.
    ds = sorted({0.4 / n, 0.8 / n, 1.0 / n, 2.0 / n, 0.3 / math.sqrt(n), 1.0 / math.sqrt(n), 1.4 / math.sqrt(n),
                 1.49 / math.sqrt(n), 1.5 / math.sqrt(n), 3 / math.sqrt(n), 10 / math.sqrt(n), 19.2 / math.sqrt(n),
                 19.3 / math.sqrt(n), 0.3, 0.5, 0.7, 1 - 1.5 / n, 1 - 0.5 / n, 0.0, 1.0})
    for d in ds:
        expected = float(ss.distributions.kstwo.sf(d, n))
        got = kolmogorov.kolmogorov_sf(d, n)
        durbin = n <= 100_000 and n * d ** 1.5 <= 1.4 and 1 < n * d < n - 1  # scipy's Durbin-matrix region
        assert got == pytest.approx(expected, rel=1e-6 if durbin else 1e-8, abs=1e-300), (n, d)


def test_wasserstein_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    for n, m, scale in ((10, 17, 1.0), (1000, 700, 2.0), (5000, 5000, 0.0001)):
        ref, cur = np.sort(rng.normal(0, scale, n)), np.sort(rng.normal(0.1, scale, m))
        expected = ss.wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001)
        got = stats.wasserstein(ref, cur)
        assert got.statistic == pytest.approx(expected, rel=1e-9)
        assert got.p_value is None and got.effect_size == got.statistic


def test_chisquare_matches_chi2_contingency() -> None:
    rng = np.random.default_rng(2)
    for k in (2, 3, 10, 40):
        ref = rng.integers(20, 200, k)
        cur = rng.integers(20, 200, k)
        expected = ss.chi2_contingency(np.vstack((ref, cur)), correction=False)
        got = stats.chisquare(ref, cur)
        assert got.statistic == pytest.approx(expected.statistic, rel=1e-10)
        assert got.p_value == pytest.approx(expected.pvalue, rel=1e-8)
        assert got.effect_size == pytest.approx(0.5 * np.abs(ref / ref.sum() - cur / cur.sum()).sum())


def test_chisquare_pools_rare_categories() -> None:
    # Expected counts under 5 on the smaller side are pooled, smallest first.
    ref = np.array([500, 400, 300, 30, 20, 10, 0])
    cur = np.array([50, 45, 30, 1, 0, 2, 1])
    pooled = np.array([[500, 400, 300, 60], [50, 45, 30, 4]])
    expected = ss.chi2_contingency(pooled, correction=False)
    got = stats.chisquare(ref, cur)
    assert got.statistic == pytest.approx(expected.statistic, rel=1e-10)
    assert got.p_value == pytest.approx(expected.pvalue, rel=1e-8)


def test_chisquare_pool_too_small_takes_in_the_next_category() -> None:
    ref, cur = np.array([1000, 2]), np.array([1000, 1])
    assert stats.chisquare(ref, cur).p_value == pytest.approx(  # two categories: never pooled
        ss.chi2_contingency(np.vstack((ref, cur)), correction=False).pvalue)
    ref, cur = np.array([1000, 900, 1, 1]), np.array([20, 25, 1, 0])
    # 4 rare rows expect under 5 even pooled, so the next smallest (900 / 25) joins the pool.
    pooled = np.array([[1000, 902], [20, 26]])
    assert stats.chisquare(ref, cur).p_value == pytest.approx(ss.chi2_contingency(pooled, correction=False).pvalue)


def test_chisquare_single_category_is_no_evidence() -> None:
    got = stats.chisquare(np.array([10]), np.array([99]))
    assert (got.statistic, got.p_value, got.effect_size) == (0.0, 1.0, 0.0)


def test_chisquare_gof_matches_scipy_chisquare() -> None:
    rng = np.random.default_rng(3)
    ref, cur = rng.integers(5, 100, 8), rng.integers(5, 100, 8)
    expected = ss.chisquare(cur, ref * cur.sum() / ref.sum())
    got = stats.chisquare_gof(ref, cur)
    assert got.statistic == pytest.approx(expected.statistic, rel=1e-10)
    assert got.p_value == pytest.approx(expected.pvalue, rel=1e-8)
    new = stats.chisquare_gof(np.array([10, 0]), np.array([5, 5]))  # a category the reference never saw
    assert math.isinf(new.statistic) and new.p_value == 0.0


def test_ztest_is_the_two_by_two_chi_square() -> None:
    rng = np.random.default_rng(4)
    for _ in range(5):
        ref, cur = rng.integers(1, 500, 2), rng.integers(1, 500, 2)
        expected = ss.chi2_contingency(np.vstack((ref, cur)), correction=False)
        got = stats.ztest(ref, cur)
        assert got.statistic ** 2 == pytest.approx(expected.statistic, rel=1e-9)
        assert got.p_value == pytest.approx(expected.pvalue, rel=1e-8)
        # Evidently's formula: 2 * (1 - Phi(|z|))
        assert got.p_value == pytest.approx(2 * (1 - ss.norm.cdf(abs(got.statistic))), abs=1e-12)
        assert got.effect_size == pytest.approx(abs(ref[0] / ref.sum() - cur[0] / cur.sum()))
    same = stats.ztest(np.array([7, 0]), np.array([3, 0]))
    assert (same.p_value, same.effect_size) == (1.0, 0.0)


def test_distances_match_scipy_and_their_formulas() -> None:
    rng = np.random.default_rng(5)
    for k in (2, 5, 30):
        ref, cur = rng.integers(0, 50, k), rng.integers(0, 50, k)
        ref[0], cur[-1] = 0, 0  # empty cells on each side
        p, q = ref / ref.sum(), cur / cur.sum()
        assert stats.jensenshannon(ref, cur).statistic == pytest.approx(scipy_js(p, q), rel=1e-10)
        pf, qf = _fill(p), _fill(q)
        assert stats.kl_div(ref, cur).statistic == pytest.approx(ss.entropy(pf, qf), rel=1e-10)
        assert stats.psi(ref, cur).statistic == pytest.approx(np.sum((pf - qf) * np.log(pf / qf)), rel=1e-10)
        # Hellinger two ways: sqrt(1 - sum sqrt(pq)) and ||sqrt p - sqrt q|| / sqrt 2.
        hell = np.linalg.norm(np.sqrt(p) - np.sqrt(q)) / math.sqrt(2)
        assert stats.hellinger(ref, cur).statistic == pytest.approx(hell, rel=1e-9)
    for fn in (stats.jensenshannon, stats.kl_div, stats.psi, stats.hellinger):
        same = fn(np.array([3, 5, 2]), np.array([30, 50, 20]))
        assert same.statistic == pytest.approx(0.0, abs=1e-7) and same.p_value is None


def _fill(shares: np.ndarray) -> np.ndarray:
    smallest = shares[shares > 0].min()
    return np.where(shares == 0, smallest / 1e6 if smallest <= 1e-4 else 1e-4, shares)


def test_bh_adjust_matches_scipy() -> None:
    rng = np.random.default_rng(6)
    for n in (1, 2, 25, 200):
        p = np.concatenate((rng.random(n), [0.0, 1.0, 1e-300]))
        assert np.allclose(stats.bh_adjust(p), ss.false_discovery_control(p, method="bh"), rtol=1e-12, atol=0)
    assert stats.bh_adjust(np.array([])).size == 0


@pytest.mark.parametrize("integer", [False, True])
def test_sturges_edges_and_histogram_match_numpy(integer: bool) -> None:
    rng = np.random.default_rng(7)
    for size in (1, 7, 1000, 12345):
        data = rng.integers(0, 15, size) if integer else rng.lognormal(0, 1, size)
        edges = stats.sturges_edges(float(data.min()), float(data.max()), size, integer)
        np.testing.assert_allclose(edges, np.histogram_bin_edges(data, bins="sturges"), rtol=1e-12)
        np.testing.assert_array_equal(stats.histogram(np.sort(data.astype(float)), edges),
                                      np.histogram(data, edges)[0])


def test_every_registered_test_runs_and_reports_an_effect_size() -> None:
    rng = np.random.default_rng(8)
    samples = np.sort(rng.normal(size=300)), np.sort(rng.normal(0.5, size=200))
    counts = np.array([30, 50, 20]), np.array([10, 60, 30])
    for name, test in stats.TESTS.items():
        assert test.name == name and test.data in ("samples", "counts")
        out = test.fn(*(samples if test.data == "samples" else counts))
        assert isinstance(out, stats.Stat)
        assert math.isfinite(out.effect_size) and out.effect_size >= 0
        assert (out.p_value is not None) == test.p_value
        if test.p_value:
            assert 0 <= out.p_value <= 1
