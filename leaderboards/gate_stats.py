"""Statistics for the release gate's "shown" verdicts.

* ``tango_interval``: Tango's score interval for a difference of paired proportions (the
  accuracy checks' non-inferiority bound; it stays honest with few or no discordant pairs,
  where the Wald interval collapses to a point);
* ``shift_bounds``: one-sided, distribution-free bounds on the shift between two samples
  (Hodges-Lehmann estimate, Moses' bounds from the exact Mann-Whitney distribution), used on
  log run times for relative budgets;
* ``median_bounds``: one-sided order-statistic (sign-test) bounds on one sample's median,
  for absolute budgets.

Every bound is exact or conservative at small samples; where the samples are too small to
reach the asked confidence at all, the bound is infinite (nothing can be shown).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from slm_tasks.results.stats import z_value


def tango_interval(base_only: int, cand_only: int, n: int, level: float) -> tuple[float, float]:
    """Two-sided ``level`` score interval (Tango 1998) for (cand_only - base_only) / n, the
    difference candidate - baseline of two proportions measured on the same n documents."""
    from scipy.optimize import brentq

    if n <= 0:
        return (-1.0, 1.0)
    z = z_value(level)
    estimate = (cand_only - base_only) / n

    def score(delta: float) -> float:
        # constrained ML estimate of the baseline-only share under candidate - baseline = delta
        a = 2 * n
        b = -cand_only - base_only + (2 * n - cand_only + base_only) * delta
        c = -base_only * delta * (1 - delta)
        p_base_only = (math.sqrt(max(b * b - 4 * a * c, 0.0)) - b) / (2 * a)
        var = n * (2 * p_base_only + delta * (1 - delta))
        diff = cand_only - base_only - n * delta
        if var <= 0:
            return math.copysign(math.inf, diff) if diff else 0.0
        return diff / math.sqrt(var)

    tol = 1e-9
    lo = -1.0 if estimate <= -1 or score(-1 + tol) <= z else brentq(lambda d: score(d) - z, -1 + tol, 1 - tol)
    hi = 1.0 if estimate >= 1 or score(1 - tol) >= -z else brentq(lambda d: score(d) + z, -1 + tol, 1 - tol)
    return (float(lo), float(hi))


@lru_cache(maxsize=256)
def _mann_whitney_cdf(m: int, n: int) -> tuple[float, ...]:
    """P(U <= u), u = 0..m*n, for the Mann-Whitney count U of two samples of sizes m and n
    under exchangeability (no ties): counts of arrangements by the usual recursion."""
    # counts[j][u]: arrangements of i items of the first sample and j of the second with U = u
    counts = [np.zeros(1) + 1.0 for _ in range(n + 1)]
    for i in range(1, m + 1):
        new = [np.zeros(1) + 1.0]  # j = 0: only U = 0
        for j in range(1, n + 1):
            row = np.zeros(i * j + 1)
            prev_i = counts[j]  # (i-1, j): the largest item is from the first sample, adds j
            row[j : j + len(prev_i)] += prev_i
            prev_j = new[j - 1]  # (i, j-1): the largest item is from the second sample
            row[: len(prev_j)] += prev_j
            new.append(row)
        counts = new
    dist = counts[n] / math.comb(m + n, m)
    return tuple(np.cumsum(dist))


def _rank_k(m: int, n: int, alpha: float) -> int:
    """The largest k with P(U <= k - 1) <= alpha (0 when even k = 1 is not reached)."""
    if m * n > 3600:  # normal approximation of U for large samples (exact below)
        mean, sd = m * n / 2, math.sqrt(m * n * (m + n + 1) / 12)
        return max(0, int(math.floor(mean - z_value(1 - 2 * alpha) * sd)))
    cdf = _mann_whitney_cdf(m, n)
    k = 0
    while k < m * n and cdf[k] <= alpha + 1e-12:
        k += 1
    return k


def shift_bounds(cand, base, confidence: float) -> tuple[float, float, float]:
    """(estimate, low, high) of the shift cand - base: the Hodges-Lehmann estimate (median of
    all pairwise differences) and one-sided bounds at ``confidence`` each (Moses): the shift
    is >= low with that confidence, and <= high with that confidence. Infinite where the
    samples are too small for the confidence (with 3 runs per side, 0.95 is just reachable:
    low is the smallest pairwise difference)."""
    x, y = np.asarray(cand, float), np.asarray(base, float)
    diffs = np.sort(np.subtract.outer(x, y).ravel())
    estimate = float(np.median(diffs))
    k = _rank_k(len(x), len(y), 1 - confidence)
    if k == 0:
        return estimate, -math.inf, math.inf
    return estimate, float(diffs[k - 1]), float(diffs[len(diffs) - k])


def median_bounds(values, confidence: float) -> tuple[float, float, float]:
    """(median, low, high): one-sided order-statistic bounds on the median at ``confidence``
    each (the sign test's; 5 values reach 0.95: all five below a limit show the median is)."""
    from scipy.stats import binom

    x = np.sort(np.asarray(values, float))
    n = len(x)
    median = float(np.median(x))
    # the largest k with P(Bin(n, 1/2) <= k - 1) <= 1 - confidence
    k = 0
    while k < n and binom.cdf(k, n, 0.5) <= 1 - confidence + 1e-12:
        k += 1
    if k == 0:
        return median, -math.inf, math.inf
    return median, float(x[k - 1]), float(x[n - k])
