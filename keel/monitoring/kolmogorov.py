"""Tail of the Kolmogorov distribution for large samples, without importing ``scipy.stats``.

``import scipy.stats`` alone takes over a second, a third of the time budget
of a whole ``keel monitor drift`` run on a million rows. Two-sample KS
p-values above 10,000 rows a side need only the one-sample Kolmogorov tail
``P(D_n >= d)`` at ``n = round(n1 n2 / (n1 + n2))`` (what ``ks_2samp`` does),
computed here by the same published formulas ``scipy.stats.kstwo.sf`` uses
(Simard and L'Ecuyer, 2011), with ``scipy.special`` only:

- ``n d <= 1`` or ``n d >= n - 1``: Ruben and Gambino's exact expressions;
- ``n d^2 >= 370``: 0 (under the smallest double);
- ``n d^2 >= 2.2`` or ``d >= 0.5``: twice the one-sided Smirnov tail, summed
  in log space (Birnbaum and Tingey); scipy's own loop takes a second at
  a million rows;
- otherwise: ``1 - CDF`` by the Pelz-Good expansion to ``n^-3/2``. (For
  ``n <= 100,000`` and ``n d^1.5 <= 1.4``, where the tail is above 0.99,
  scipy uses the Durbin matrix instead; the two differ there by under 1e-6.)

``tests/monitoring/test_stats.py`` checks all branches against scipy.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["kolmogorov_sf", "smirnov_tail"]

_PI2 = math.pi ** 2


def kolmogorov_sf(d: float, n: int) -> float:
    """``P(D_n >= d)`` for the two-sided one-sample Kolmogorov statistic (``scipy.stats.kstwo.sf(d, n)``)."""
    if d <= 0:
        return 1.0
    if d >= 1:
        return 0.0
    t = n * d
    if t <= 0.5:
        return 1.0
    if t <= 1:
        from scipy.special import gammaln

        return _clip(1 - math.exp(gammaln(n + 1) - n * math.log(n) + n * math.log(2 * t - 1)))
    if t >= n - 1:
        return _clip(2 * (1 - d) ** n)
    n_d2 = t * d
    if d >= 0.5 or 2.2 <= n_d2 < 370:
        return _clip(2 * smirnov_tail(n, d))
    if n_d2 >= 370:
        return 0.0
    return _clip(1 - _pelz_good_cdf(n, d))


def smirnov_tail(n: int, x: float) -> float:
    """``P(D+_n >= x) = x sum_j C(n, j) (1 - x - j/n)^(n - j) (x + j/n)^(j - 1)``, ``j = 0 .. floor(n (1 - x))``."""
    from scipy.special import gammaln

    j = np.arange(int(np.floor(n * (1 - x))) + 1, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_terms = (gammaln(n + 1) - gammaln(j + 1) - gammaln(n - j + 1)
                     + (n - j) * np.log1p(-x - j / n) + (j - 1) * np.log(x + j / n))
    top = log_terms.max()
    return float(x * math.exp(top) * np.sum(np.exp(log_terms - top)))


def _pelz_good_cdf(n: int, x: float) -> float:
    """Pelz and Good (1976): ``P(D_n <= x) ~ K0(z) + K1(z)/sqrt(n) + K2(z)/n + K3(z)/n^1.5``, ``z = x sqrt(n)``.

    Each K is a theta-function series in ``q = exp(-pi^2 / (8 z^2))``,
    summed over odd m = 2k - 1 (Horner in q^(8k)), plus the K2 and K3 terms
    in ``exp(-pi^2 k^2 / (2 z^2))``.
    """
    z = math.sqrt(n) * x
    z2, z3, z4, z6 = z * z, z ** 3, z ** 4, z ** 6
    log_q = -_PI2 / 8 / z2
    if log_q < math.log(np.finfo(np.float64).tiny):
        return 0.0
    q = math.exp(log_q)
    maxk = int(math.ceil(16 * z / math.pi))
    m = 2.0 * np.arange(1, maxk + 1) - 1
    m2, m4, m6 = m ** 2, m ** 4, m ** 6
    coeffs = np.stack((np.ones(maxk), -z2 + _PI2 / 4 * m2,
                       6 * z6 + 2 * z4 + (2 * z4 - 5 * z2) * _PI2 / 4 * m2 + _PI2 ** 2 * (1 - 2 * z2) / 16 * m4,
                       -30 * z6 - 90 * z ** 8 + _PI2 * (135 * z4 - 96 * z6) / 4 * m2
                       + _PI2 ** 2 * (-60 * z2 + 212 * z4) / 16 * m4 + _PI2 ** 3 * (5 - 30 * z2) / 64 * m6))
    terms = np.zeros(4)
    for k in range(maxk, 0, -1):  # Horner, as scipy, for the same rounding
        terms = terms * q ** (8 * k) + coeffs[:, k - 1]
    terms *= q * math.sqrt(2 * math.pi) / np.array([z, 6 * z4, 72 * z ** 7, 6480 * z ** 10])
    ks = np.arange(maxk, 0, -1, dtype=np.float64)
    q_powers = math.exp(-_PI2 / 2 / z2) ** (ks ** 2)
    terms[2] += np.sum(ks ** 2 * q_powers) * _PI2 * math.sqrt(2 * math.pi) / (-36 * z3)
    root3z = math.sqrt(3) * z
    terms[3] += (np.sum((root3z + math.pi * ks) * (root3z - math.pi * ks) * ks ** 2 * q_powers)
                 * _PI2 * math.sqrt(2 * math.pi) / (216 * z6))
    return float(np.sum(terms / np.power(float(n), np.arange(4) / 2.0)))


def _clip(p: float) -> float:
    return min(max(float(p), 0.0), 1.0)
