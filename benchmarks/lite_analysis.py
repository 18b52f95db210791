"""How much can the lite suite tell? Sampling error of lite scores and detectable differences.

A lite task scores a fixed, seeded subset of ``n`` documents (``lite_n``, 200) out of the
``N`` documents of the full eval split (:func:`slm_tasks.data.lite_subset`). Its score is an
estimate of the full-split score; this module measures how good an estimate, from per-doc
results of a *full* run (lm-eval's ``--log_samples``):

* :func:`task_lite_error` - the standard error of a lite task mean around the full-split
  mean, finite-population corrected (FPC: the lite docs are drawn without replacement from
  the full split, and with ``n = N`` the error is 0), for simple random or stratified
  subsets; plus the actual lite-minus-full difference for the real lite subset;
* :func:`domain_lite_error` - the same for a domain score (plain average of task scores);
* :func:`min_detectable_difference` and :func:`compare_models` - the smallest difference
  between two models that a comparison detects with 95 % confidence (two-sided) and 80 %
  power, paired (both models on the same docs, per-doc differences) or unpaired (from each
  score's own standard error, as lm-eval's stderr-based comparisons do);
* :func:`resample_lite_means` - an empirical check of the FPC formula: the spread of lite
  means over many random subsets of the same size.

Two targets are distinguished. *Lite vs full* treats the full split as the population
(FPC; the full score has no error about itself): "how far can lite be from the full
number?". *Full suite* treats documents as a sample from a larger population of such items
(no FPC), as lm-eval's stderr does: "what can the full suite itself resolve?".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from slm_tasks.data import LITE_SEED, lite_subset
from slm_tasks.results import stats

ALPHA = 0.05
POWER = 0.80


def z_factor(alpha: float = ALPHA, power: float = POWER) -> float:
    """z_{1-alpha/2} + z_{power}: 1.960 + 0.842 = 2.802 for 95 % / 80 %."""
    return float(norm.ppf(1 - alpha / 2) + norm.ppf(power))


def min_detectable_difference(se_diff: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest true difference a two-sided z-test at level ``alpha`` detects with ``power``,
    given the standard error of the estimated difference."""
    return z_factor(alpha, power) * se_diff


def scores_from_samples(rows: Iterable[Mapping], metric: str = "acc", filter_name: str = "none") -> np.ndarray:
    """Per-doc scores from lm-eval sample dicts, ordered by ``doc_id`` (= eval-split order
    for a run without --limit)."""
    pairs = sorted((r["doc_id"], float(r[metric])) for r in rows if r.get("filter", "none") == filter_name)
    ids = [d for d, _ in pairs]
    if ids != list(range(len(ids))):
        raise ValueError("samples do not cover doc_ids 0..N-1: a full run (no --limit) is needed")
    return np.array([x for _, x in pairs], dtype=float)


def lite_indices(n_full: int, n: int, strata: Sequence | None = None, seed: int = LITE_SEED) -> np.ndarray:
    """The doc indices the loader keeps for a lite task (same function, same seed)."""
    import datasets

    cols = {"_i": list(range(n_full))}
    if strata is not None:
        cols["_s"] = list(strata)
    ds = lite_subset(datasets.Dataset.from_dict(cols), n, "_s" if strata is not None else None, seed)
    return np.asarray(ds["_i"], dtype=int)


@dataclass
class LiteError:
    """Sampling error of one lite task mean as an estimate of its full-split mean."""

    task: str
    N: int  # docs in the full split
    n: int  # docs in the lite subset
    full_mean: float
    se: float  # FPC standard error of the lite mean around the full mean
    bias: float = 0.0  # E[lite mean] - full mean (stratified rounding; 0 for random subsets)
    lite_mean: float | None = None  # the real lite subset's mean, when indices were given
    se_full_superpop: float = 0.0  # the full score's own stderr (no FPC), for reference
    strata: int | None = None

    @property
    def half_width95(self) -> float:
        return stats.z_value(1 - ALPHA) * self.se

    @property
    def actual_diff(self) -> float | None:
        return None if self.lite_mean is None else self.lite_mean - self.full_mean

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d.update(half_width95=self.half_width95, actual_diff=self.actual_diff)
        return d


def task_lite_error(
    scores: Sequence[float],
    n: int = 200,
    *,
    task: str = "",
    strata: Sequence | None = None,
    indices: Sequence[int] | None = None,
) -> LiteError:
    """Standard error of the mean over a size-``n`` lite subset of the full per-doc
    ``scores``, as an estimator of ``scores.mean()``.

    Random subset: ``se^2 = (1 - n/N) S^2 / n`` with ``S^2`` the population variance with
    ``N - 1`` in the denominator. Stratified (``strata`` = one label per doc, allocation as
    :func:`slm_tasks.data.lite_subset` makes it): the lite score is the plain mean over the
    subset, ``sum_h (n_h/n) ybar_h``, with variance ``sum_h (n_h/n)^2 (1 - n_h/N_h) S_h^2 / n_h``
    and a small bias where ``n_h/n`` differs from ``N_h/N``. ``indices`` (default: the
    loader's own lite subset) gives the real lite mean.
    """
    y = np.asarray(scores, dtype=float)
    N = len(y)
    if N < 2:
        raise ValueError(f"{task or 'task'}: need per-doc scores of at least 2 docs, got {N}")
    n = min(int(n), N)
    if indices is None:
        indices = lite_indices(N, n, strata)
    idx = np.asarray(indices, dtype=int)
    full = float(y.mean())
    superpop = stats.se_mean(y)
    if strata is None:
        var = (1 - n / N) * y.var(ddof=1) / n
        return LiteError(task, N, n, full, math.sqrt(max(var, 0.0)), 0.0, float(y[idx].mean()), superpop)
    labels = np.asarray(list(strata), dtype=object)
    picked = labels[idx]
    var, expect = 0.0, 0.0
    names = sorted(set(labels.tolist()), key=str)
    for h in names:
        yh = y[labels == h]
        nh = int((picked == h).sum())
        if nh == 0:
            continue
        w = nh / len(idx)
        expect += w * yh.mean()
        if len(yh) > 1:
            var += w * w * (1 - nh / len(yh)) * yh.var(ddof=1) / nh
    return LiteError(
        task,
        N,
        len(idx),
        full,
        math.sqrt(max(var, 0.0)),
        float(expect - full),
        float(y[idx].mean()),
        superpop,
        len(names),
    )


@dataclass
class DomainError:
    """A domain score (plain mean of task scores) from lite vs from the full split."""

    tasks: list[str]
    full_mean: float
    se: float  # sqrt(sum se_t^2) / T: tasks use disjoint docs, subsets drawn independently
    lite_mean: float | None
    se_full_superpop: float
    parts: list[LiteError] = field(default_factory=list)

    @property
    def half_width95(self) -> float:
        return stats.z_value(1 - ALPHA) * self.se


def domain_lite_error(parts: Sequence[LiteError]) -> DomainError:
    t = len(parts)
    lite = [p.lite_mean for p in parts]
    return DomainError(
        [p.task for p in parts],
        sum(p.full_mean for p in parts) / t,
        stats.se_average(p.se for p in parts),
        None if any(x is None for x in lite) else sum(lite) / t,
        stats.se_average(p.se_full_superpop for p in parts),
        list(parts),
    )


def mdd_unpaired(p: float, n: int, N: int | None = None, alpha: float = ALPHA, power: float = POWER) -> float:
    """MDD between two models each scored on ``n`` docs with accuracy about ``p``, compared
    from their own standard errors (no pairing). ``N`` applies the FPC (lite vs full)."""
    fpc = 1.0 if N is None else (1 - n / N)
    return min_detectable_difference(math.sqrt(2 * p * (1 - p) / n * fpc), alpha, power)


def mdd_paired(discordance: float, n: int, N: int | None = None, alpha: float = ALPHA, power: float = POWER) -> float:
    """MDD for a paired comparison on the same ``n`` docs (0/1 scores), where
    ``discordance`` is the share of docs on which exactly one of the two models is right
    (the variance of a per-doc difference is ``discordance - diff^2``; ~``discordance``
    for small differences). ``N`` applies the FPC."""
    fpc = 1.0 if N is None else (1 - n / N)
    return min_detectable_difference(math.sqrt(discordance / n * fpc), alpha, power)


@dataclass
class Comparison:
    task: str
    n: int
    N: int
    diff_full: float  # model A - model B on the full split
    diff_lite: float  # ... on the lite subset
    discordance: float  # share of docs where exactly one model is right (full split)
    mdd_paired_lite: float  # lite vs full (FPC), paired per-doc differences
    mdd_unpaired_lite: float  # lite vs full (FPC), from the two stderrs
    mdd_paired_full: float  # full suite, docs as a sample (no FPC), paired
    mdd_unpaired_full: float  # full suite, unpaired

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def compare_models(
    a: Sequence[float],
    b: Sequence[float],
    n: int = 200,
    *,
    task: str = "",
    strata: Sequence | None = None,
    indices: Sequence[int] | None = None,
) -> Comparison:
    """Detectable differences between two models from their full per-doc scores."""
    ya, yb = np.asarray(a, float), np.asarray(b, float)
    if ya.shape != yb.shape:
        raise ValueError(f"{task}: the two models were scored on different docs ({len(ya)} vs {len(yb)})")
    N = len(ya)
    idx = np.asarray(indices if indices is not None else lite_indices(N, n, strata), dtype=int)
    n = len(idx)
    d = ya - yb
    fpc = 1 - n / N
    se_d_lite = math.sqrt(d.var(ddof=1) / n * fpc)
    se_u_lite = math.sqrt((ya.var(ddof=1) + yb.var(ddof=1)) / n * fpc)
    se_d_full = math.sqrt(d.var(ddof=1) / N)
    se_u_full = math.sqrt((ya.var(ddof=1) + yb.var(ddof=1)) / N)
    return Comparison(
        task,
        n,
        N,
        float(d.mean()),
        float(d[idx].mean()),
        float(np.mean(d != 0)),
        min_detectable_difference(se_d_lite),
        min_detectable_difference(se_u_lite),
        min_detectable_difference(se_d_full),
        min_detectable_difference(se_u_full),
    )


def resample_lite_means(scores: Sequence[float], n: int = 200, reps: int = 2000, seed: int = 0) -> np.ndarray:
    """Means of ``reps`` random size-``n`` subsets drawn without replacement."""
    y = np.asarray(scores, float)
    rng = np.random.default_rng(seed)
    out = np.empty(reps)
    for start in range(0, reps, 500):  # blocks of random permutations, n first of each
        k = min(500, reps - start)
        picks = np.argpartition(rng.random((k, len(y))), n - 1, axis=1)[:, :n]
        out[start : start + k] = y[picks].mean(axis=1)
    return out


def lite_table(errors: Sequence[LiteError], domain: DomainError | None = None) -> str:
    """Markdown table of lite-vs-full sampling errors."""
    out = [
        "| task | N | n | full | lite | lite - full | SE (FPC) | 95% half-width | full-suite SE |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in errors:
        lite = "" if e.lite_mean is None else f"{e.lite_mean:.3f}"
        diff = "" if e.actual_diff is None else f"{e.actual_diff:+.3f}"
        out.append(
            f"| {e.task} | {e.N} | {e.n} | {e.full_mean:.3f} | {lite} | {diff} | {e.se:.3f} | "
            f"±{e.half_width95:.3f} | {e.se_full_superpop:.3f} |"
        )
    if domain is not None:
        lite = "" if domain.lite_mean is None else f"{domain.lite_mean:.3f}"
        diff = "" if domain.lite_mean is None else f"{domain.lite_mean - domain.full_mean:+.3f}"
        out.append(
            f"| domain mean | | | {domain.full_mean:.3f} | {lite} | {diff} | {domain.se:.3f} | "
            f"±{domain.half_width95:.3f} | {domain.se_full_superpop:.3f} |"
        )
    return "\n".join(out)


# Which doc field a lite task stratifies by (the lite YAMLs' lite_strata).
STRATA = {"slm_mmlu": "subject", "slm_minerva_math": "type"}


def analyse_samples(
    samples: Mapping[str, list[dict]],
    n: int = 200,
    *,
    metric: str = "acc",
    filters: Mapping[str, str] | None = None,
    strata: Mapping[str, str] | None = None,
) -> tuple[list[LiteError], DomainError]:
    """Lite-vs-full errors for every task of a full run's per-doc samples, and for their
    plain average. ``filters`` maps task -> filter name (default ``none``); ``strata`` maps
    task -> the doc field its lite subset is stratified by (default :data:`STRATA`; needs
    the ``doc`` in the samples)."""
    strata = dict(STRATA if strata is None else strata)
    errors = []
    for task, rows in samples.items():
        f = (filters or {}).get(task, "none")
        y = scores_from_samples(rows, metric, f)
        labels = None
        if task in strata:
            by_id = {r["doc_id"]: r["doc"][strata[task]] for r in rows if r.get("filter", "none") == f}
            labels = [by_id[i] for i in range(len(y))]
        errors.append(task_lite_error(y, n, task=task, strata=labels))
    return errors, domain_lite_error(errors)


@dataclass
class LiteEstimate:
    """A lite task's score with its sampling error estimated from the lite docs alone
    (no full run needed): ``se = sqrt((1 - n/N) s^2 / n)``, ``s^2`` the lite per-doc variance."""

    task: str
    N: int
    n: int
    lite_mean: float
    se: float  # lite vs full (FPC)
    se_full_planned: float  # the full split's own stderr, assuming the same per-doc variance

    @property
    def half_width95(self) -> float:
        return stats.z_value(1 - ALPHA) * self.se

    @property
    def mdd_unpaired(self) -> float:
        """Smallest gap between two models' lite scores of this size that comparing
        ``score ± se`` detects (95 % / 80 %)."""
        return min_detectable_difference(math.sqrt(2) * self.se)


def estimate_from_lite(scores: Sequence[float], N: int, *, task: str = "") -> LiteEstimate:
    """Sampling error of a lite mean from its own per-doc scores (a simple random subset;
    for a stratified one this is conservative). ``N``: docs in the full split."""
    y = np.asarray(scores, dtype=float)
    n = len(y)
    if n < 2 or N < n:
        raise ValueError(f"{task or 'task'}: need at least 2 lite docs and N >= n (n={n}, N={N})")
    s2 = float(y.var(ddof=1))
    return LiteEstimate(task, int(N), n, float(y.mean()), math.sqrt((1 - n / N) * s2 / n), math.sqrt(s2 / N))


def estimate_table(estimates: Sequence[LiteEstimate], domains: Mapping[str, Sequence[str]] | None = None) -> str:
    """Markdown: each task's lite score, SE and 95 % half-width, and each domain mean's
    (plain mean of its tasks; SE ``sqrt(sum se^2) / T``)."""
    out = [
        "| task | N | n | lite score | SE lite vs full | 95% ± | MDD (unpaired) | full-split SE |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by = {e.task: e for e in estimates}
    for e in estimates:
        out.append(
            f"| {e.task} | {e.N} | {e.n} | {e.lite_mean:.3f} | {e.se:.3f} | ±{e.half_width95:.3f} | "
            f"{e.mdd_unpaired:.3f} | {e.se_full_planned:.3f} |"
        )
    z = stats.z_value(1 - ALPHA)
    for name, members in (domains or {}).items():
        parts = [by[t] for t in members if t in by]
        if not parts:
            continue
        t = len(parts)
        se = stats.se_average(p.se for p in parts)
        full = stats.se_average(p.se_full_planned for p in parts)
        mean = sum(p.lite_mean for p in parts) / t
        out.append(
            f"| **{name}** ({t}) | | | {mean:.3f} | {se:.3f} | ±{z * se:.3f} | "
            f"{min_detectable_difference(math.sqrt(2) * se):.3f} | {full:.3f} |"
        )
    return "\n".join(out)
