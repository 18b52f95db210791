"""The statistics of the suite: standard errors, intervals and tests.

Standard errors of a mean over documents, of a plain average of task (or domain) scores and
of an unpaired difference; Wilson and bootstrap intervals, normal intervals from stderr
(clamped to [0, 1]), MOVER intervals of an average;
exact McNemar and paired bootstrap tests, Holm's step-down correction. The board, the gate,
the ICL gain (slm_tasks.results.icl_gain) and the lite analysis (benchmarks/lite_analysis.py) all use these.

All random draws come from a seeded ``numpy.random.Generator`` so boards are reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np

# scipy.stats is imported where the exact test needs it: it takes seconds to import, and a
# board without a gate never needs it.
_NORMAL = NormalDist()

# Resample in chunks so a 14k-doc task with 2000 draws stays within ~50 MB.
_CHUNK_CELLS = 4_000_000


def z_value(level: float) -> float:
    return _NORMAL.inv_cdf(0.5 + level / 2)


def se_mean(values) -> float | None:
    """Standard error of a mean over documents, sd / sqrt(n) (None below 2 documents).

    Documents are treated as a sample from a larger population of such items, as lm-eval
    does; no finite-population correction.
    """
    x = np.asarray(values, dtype=float)
    return float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else None


def se_average(ses) -> float:
    """Standard error of a plain average of k independent scores, sqrt(sum se^2) / k.

    Tasks score disjoint documents, so task scores (and the domain scores made of them) are
    independent.
    """
    ses = list(ses)
    return math.sqrt(sum(se * se for se in ses)) / len(ses)


def se_unpaired_diff(se_a: float, se_b: float) -> float:
    """Standard error of a - b treated as independent, sqrt(se_a^2 + se_b^2). On the same
    documents this overstates the error (it ignores their positive correlation)."""
    return math.hypot(se_a, se_b)


def is_binary(values: np.ndarray) -> bool:
    return bool(np.all((values == 0) | (values == 1)))


def wilson(k: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (well-behaved at 0% and 100%)."""
    if n <= 0:
        return (math.nan, math.nan)
    z = z_value(level)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exact ends at 0% and 100% (the formula gives them up to rounding)
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)


def normal_interval(value: float, se: float, level: float = 0.95) -> tuple[float, float]:
    z = z_value(level)
    return (value - z * se, value + z * se)


def bootstrap_means(values: np.ndarray, iters: int, rng: np.random.Generator) -> np.ndarray:
    """``iters`` bootstrap replicates of the mean of ``values`` (resampling documents)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if is_binary(values):  # the mean of n resampled 0/1 outcomes is Binomial(n, p)/n
        return rng.binomial(n, values.mean(), size=iters) / n
    out = np.empty(iters)
    step = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, iters, step):
        stop = min(iters, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


@dataclass
class Estimate:
    """A score with its interval, how the interval was made, and what aggregation needs."""

    value: float
    low: float | None
    high: float | None
    method: str  # "wilson" | "bootstrap" | "stderr" | "mover" | "none"
    se: float | None = None
    n: int | None = None

    def to_json(self, digits: int = 6) -> dict:
        r = lambda x: None if x is None or not math.isfinite(x) else round(float(x), digits)  # noqa: E731
        return {
            "value": r(self.value),
            "low": r(self.low),
            "high": r(self.high),
            "method": self.method,
            "se": r(self.se),
            "n": self.n,
        }


# Board scores are fractions: an interval never leaves the metric's range.
PROPORTION = (0.0, 1.0)


def clamp_interval(lo: float, hi: float, bounds: tuple[float, float] = PROPORTION) -> tuple[float, float]:
    """An interval cut to the metric's range (a normal interval around 2% can reach -3%)."""
    return (min(max(lo, bounds[0]), bounds[1]), min(max(hi, bounds[0]), bounds[1]))


def task_estimate(
    value: float, per_doc: np.ndarray | None, stderr: float | None, level: float, iters: int, rng: np.random.Generator
) -> Estimate:
    """Per-doc outcomes give Wilson (0/1) or bootstrap intervals; otherwise lm-eval's stderr
    as a normal interval clamped to [0, 1]."""
    if per_doc is not None and len(per_doc):
        n = len(per_doc)
        se = se_mean(per_doc) or 0.0
        if is_binary(per_doc):
            lo, hi = wilson(float(per_doc.sum()), n, level)
            return Estimate(value, lo, hi, "wilson", se, n)
        draws = bootstrap_means(per_doc, iters, rng)
        lo, hi = percentile_interval(draws, level)
        return Estimate(value, lo, hi, "bootstrap", se, n)
    if stderr is not None:
        lo, hi = clamp_interval(*normal_interval(value, stderr, level))
        return Estimate(value, lo, hi, "stderr", stderr)
    return Estimate(value, None, None, "none")


def mean_estimate(parts: list[Estimate], level: float) -> Estimate:
    """Plain average of independent estimates (tasks -> domain, domains -> overall).

    One part: that part, interval and method included (a one-task domain is its task).
    Several: MOVER (Zou & Donner 2008, "method of variance estimates recovery") on the
    parts' own intervals, mean - sqrt(sum (v_i - low_i)^2) / k and
    mean + sqrt(sum (high_i - v_i)^2) / k. It keeps each part's asymmetry (a 0% task's
    Wilson interval still reaches up), reduces to the normal interval sqrt(sum se^2) / k
    when the parts' intervals are symmetric, and stays within the parts' range: the ends lie
    between the mean of the parts' ends and the mean itself. ``level`` is the parts' level.
    """
    del level  # the parts' intervals carry it
    k = len(parts)
    if k == 1:
        return replace(parts[0])
    value = sum(p.value for p in parts) / k
    se = se_average(p.se for p in parts) if all(p.se is not None for p in parts) else None
    if any(p.low is None or p.high is None for p in parts):
        return Estimate(value, None, None, "none", se)
    down = math.sqrt(sum(max(0.0, p.value - p.low) ** 2 for p in parts)) / k
    up = math.sqrt(sum(max(0.0, p.high - p.value) ** 2 for p in parts)) / k
    return Estimate(value, value - down, value + up, "mover", se)


def normalise(e: Estimate, baseline: float) -> Estimate:
    """Open LLM Leaderboard v2 style: (score - random) / (1 - random) * 100, floored at 0.

    The interval goes through the same monotone map, so it stays within [0, 100] and
    contains the normalised value.
    """
    scale = 100.0 / (1.0 - baseline)
    f = lambda x: None if x is None else min(100.0, max(0.0, (x - baseline) * scale))  # noqa: E731
    se = None if e.se is None else e.se * scale
    return Estimate(f(e.value), f(e.low), f(e.high), e.method, se, e.n)


# ---- paired comparisons (the gate) ---------------------------------------------------------


@dataclass
class PairedResult:
    n: int
    diff: float  # candidate - baseline
    low: float
    high: float
    p_value: float  # H0: diff >= -margin  vs  H1: diff < -margin (regressed beyond the margin)
    method: str
    base_only: int | None = None  # discordant pairs (0/1 outcomes)
    cand_only: int | None = None


def mcnemar_regression(base: np.ndarray, cand: np.ndarray, margin: float, level: float) -> PairedResult:
    """Exact McNemar on the discordant pairs, one-sided for a drop beyond ``margin``.

    Among the d discordant docs, b = baseline right / candidate wrong. With margin 0 the
    null is b ~ Binomial(d, 1/2) (the exact McNemar test). With margin m the null boundary
    diff = -m puts the baseline-only share at 1/2 + m*n/(2d) (d/n estimates the discordant
    rate); when that reaches 1 the drop cannot exceed the margin and p = 1.
    """
    n = len(base)
    b = int(np.sum((base == 1) & (cand == 0)))
    c = int(np.sum((base == 0) & (cand == 1)))
    d = b + c
    diff = (c - b) / n
    if d == 0:
        p = 1.0
    else:
        p0 = 0.5 + margin * n / (2 * d)
        from scipy.stats import binomtest

        p = 1.0 if p0 >= 1 else float(binomtest(b, d, p0, alternative="greater").pvalue)
    # Wald interval for a paired difference of proportions, with the zero-discordance case exact
    se = math.sqrt(max(d - (c - b) ** 2 / n, 0.0)) / n
    lo, hi = normal_interval(diff, se, level)
    return PairedResult(n, diff, max(-1.0, lo), min(1.0, hi), p, "exact McNemar", b, c)


def paired_bootstrap_regression(
    base: np.ndarray, cand: np.ndarray, margin: float, level: float, iters: int, rng: np.random.Generator
) -> PairedResult:
    """Paired bootstrap over documents of mean(cand - base), one-sided for a drop beyond margin."""
    delta = np.asarray(cand, float) - np.asarray(base, float)
    n = len(delta)
    diff = float(delta.mean())
    draws = bootstrap_means(delta, iters, rng)
    lo, hi = percentile_interval(draws, level)
    # null distribution: the bootstrap spread of the mean, centred on the margin boundary
    p = float((np.sum(draws - diff <= diff + margin) + 1) / (iters + 1))
    return PairedResult(n, diff, lo, hi, min(1.0, p), "paired bootstrap")


def unpaired_regression(
    base_mean: float, base_se: float, cand_mean: float, cand_se: float, margin: float = 0.0
) -> float:
    """One-sided two-sample z-test from the two reported stderrs, ignoring the pairing (what
    lm-eval's comparison script does): H1 is candidate - baseline < -margin."""
    se = se_unpaired_diff(base_se, cand_se)
    diff = cand_mean - base_mean
    if se == 0:
        return 0.0 if diff < -margin else 1.0
    return _NORMAL.cdf((diff + margin) / se)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control across tasks)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
