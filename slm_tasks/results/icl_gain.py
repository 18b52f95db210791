"""The ICL gain: the k-shot minus 0-shot accuracy per task and averaged over tasks.

With a standard error: paired per-document differences when per-sample results are given
(the same documents are scored at every shot count), otherwise from the two reported
standard errors (unpaired; says so). The tasks are the ICL variants of
:mod:`slm_tasks.icl`; ``slm-suite run``'s summary and the board's ICL column both use
:func:`icl_gain`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slm_tasks.errors import SLMError
from slm_tasks.icl import parse_name
from slm_tasks.results import stats
from slm_tasks.results.samples import DocScores, doc_scores, read_rows, samples_files


class ICLError(SLMError):
    """ICL results cannot be compared as asked; the message says why and what to do."""


@dataclass
class Gain:
    """One task's (or the average's) accuracy change from ``low`` to ``high`` shots."""

    task: str
    low_shots: int
    high_shots: int
    low: float  # accuracy at low_shots
    high: float  # accuracy at high_shots
    gain: float  # high - low
    stderr: float | None
    method: str  # "paired" | "unpaired" | "paired+unpaired" (average over mixed tasks)
    n: int | None = None  # documents per shot count (paired), else None
    tasks: list[str] = field(default_factory=list)  # for the average: the tasks in it

    def interval(self, level: float = 0.95) -> tuple[float, float] | None:
        """Normal interval of the gain at ``level``, or None without a stderr."""
        return None if self.stderr is None else stats.normal_interval(self.gain, self.stderr, level)

    @property
    def ci95(self) -> tuple[float, float] | None:
        return self.interval(0.95)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["ci95"] = self.ci95
        return d


def icl_gain(
    results: Mapping[str, Any],
    samples: Mapping[str, list[dict] | Mapping[str, DocScores]] | None = None,
    *,
    low: int = 0,
    high: int = 5,
    metric: str = "acc",
    filter_name: str = "none",
) -> dict[str, Any]:
    """Gain in ``metric`` from ``low`` to ``high`` shots, per task and averaged.

    ``results`` is lm-eval's output (``simple_evaluate``'s dict or a ``results_*.json``):
    its ``results`` and ``n-shot`` sections are read. ``samples`` maps task name -> the
    per-document sample dicts lm-eval logs (``--log_samples``; also taken from
    ``results["samples"]`` when present), or to their per-filter
    :class:`~slm_tasks.results.samples.DocScores` as the board reads them. With samples
    for both shot counts of a task, the stderr is that of the mean paired difference over
    documents, matched by ``doc_id`` (and ``doc_hash`` when logged). Otherwise it is
    ``sqrt(se_low^2 + se_high^2)`` from lm-eval's stderrs, which ignores the (usually
    positive) correlation between the two runs on the same documents and so overstates the
    uncertainty.

    The average is the plain mean over the tasks that ran at both shot counts; its stderr
    is ``sqrt(sum se_i^2) / T`` (tasks use disjoint documents). Standard errors treat the
    documents as a sample from a larger population of such items, as lm-eval does.

    Returns ``{"tasks": {base_name: Gain}, "mean": Gain | None, "skipped": {base: why}}``
    where ``base_name`` is e.g. ``"arc_challenge"`` or ``"arc_challenge (lite)"``.
    """
    if samples is None:
        samples = results.get("samples")
    res = results.get("results")
    if not isinstance(res, Mapping):
        raise ICLError("not an lm-eval results dict: it has no 'results' section")
    nshot = results.get("n-shot") or {}
    key = f"{metric},{filter_name}"

    found: dict[tuple[str, bool], dict[int, str]] = {}
    for name in res:
        parsed = parse_name(name)
        if parsed:
            base, k, lite = parsed
            if name in nshot and int(nshot[name]) != k:
                raise ICLError(
                    f"{name} ran with {nshot[name]} shots, not {k}: lm-eval's --num_fewshot "
                    f"overrides the shot count of ICL tasks; run slm_icl without --num_fewshot"
                )
            found.setdefault((base, lite), {})[k] = name

    gains: dict[str, Gain] = {}
    skipped: dict[str, str] = {}
    for (base, lite), by_k in sorted(found.items()):
        label = base + (" (lite)" if lite else "")
        missing = [k for k in (low, high) if k not in by_k]
        if missing:
            skipped[label] = f"no {'/'.join(map(str, missing))}-shot result in these results"
            continue
        t_low, t_high = by_k[low], by_k[high]
        for t in (t_low, t_high):
            if key not in res[t]:
                raise ICLError(f"{t} has no '{key}' in its results; pass metric=/filter_name=")
        a, b = float(res[t_low][key]), float(res[t_high][key])
        if samples and t_low in samples and t_high in samples:
            diffs = _paired_diffs(
                _by_filter(samples[t_low], t_low),
                _by_filter(samples[t_high], t_high),
                metric,
                filter_name,
                t_low,
                t_high,
            )
            gains[label] = Gain(label, low, high, a, b, b - a, stats.se_mean(diffs), "paired", len(diffs))
        else:
            se_a = _num(res[t_low].get(f"{metric}_stderr,{filter_name}"))
            se_b = _num(res[t_high].get(f"{metric}_stderr,{filter_name}"))
            se = stats.se_unpaired_diff(se_a, se_b) if se_a is not None and se_b is not None else None
            gains[label] = Gain(label, low, high, a, b, b - a, se, "unpaired")

    mean = _average(list(gains.values()), low, high) if gains else None
    return {"tasks": gains, "mean": mean, "skipped": skipped}


def _by_filter(samples: list[dict] | Mapping[str, DocScores], task: str) -> Mapping[str, DocScores]:
    return samples if isinstance(samples, Mapping) else doc_scores(samples, task)


def _paired_diffs(
    s_low: Mapping[str, DocScores], s_high: Mapping[str, DocScores], metric, filter_name, t_low, t_high
) -> list[float]:
    def per_doc(by_filter, task) -> tuple[dict[int, float], DocScores | None]:
        ds = by_filter.get(filter_name)
        if ds is None:
            return {}, None
        values = ds.by_doc(metric)
        if values is None:
            raise ICLError(f"samples of {task} have no per-document '{metric}'")
        return values, ds

    (lo, d_lo), (hi, d_hi) = per_doc(s_low, t_low), per_doc(s_high, t_high)
    if set(lo) != set(hi):
        raise ICLError(
            f"{t_low} and {t_high} were scored on different documents ({len(lo)} vs {len(hi)}); "
            f"run both with the same --limit"
        )
    diffs = []
    for doc_id, x_lo in lo.items():
        h_lo, h_hi = d_lo.doc_hash.get(doc_id), d_hi.doc_hash.get(doc_id)
        if h_lo and h_hi and h_lo != h_hi:
            raise ICLError(f"{t_low} and {t_high}: document {doc_id} differs (doc_hash); not comparable")
        diffs.append(hi[doc_id] - x_lo)
    if not diffs:
        raise ICLError(f"no per-document samples with filter '{filter_name}' for {t_low}")
    return diffs


def _average(gains: list[Gain], low: int, high: int) -> Gain:
    t = len(gains)
    ses = [g.stderr for g in gains]
    se = stats.se_average(ses) if all(s is not None for s in ses) else None
    methods = sorted({g.method for g in gains})
    return Gain(
        "mean",
        low,
        high,
        sum(g.low for g in gains) / t,
        sum(g.high for g in gains) / t,
        sum(g.gain for g in gains) / t,
        se,
        "+".join(methods),
        tasks=[g.task for g in gains],
    )


def _num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):  # lm-eval writes "N/A"
        return None
    return v if math.isfinite(v) else None


def format_gain_table(gain: Mapping[str, Any]) -> str:
    """Markdown table of :func:`icl_gain`'s result."""
    rows = list(gain["tasks"].values()) + ([gain["mean"]] if gain["mean"] else [])
    if not rows:
        return "(no ICL results)"
    lo, hi = rows[0].low_shots, rows[0].high_shots
    out = [
        f"| task | acc {lo}-shot | acc {hi}-shot | gain | 95% CI | stderr from |",
        "|---|---:|---:|---:|---|---|",
    ]
    for g in rows:
        ci = f"[{g.ci95[0]:+.3f}, {g.ci95[1]:+.3f}]" if g.ci95 else "n/a"
        out.append(f"| {g.task} | {g.low:.3f} | {g.high:.3f} | {g.gain:+.3f} | {ci} | {g.method} |")
    for base, why in gain.get("skipped", {}).items():
        out.append(f"| {base} | | | | | skipped: {why} |")
    return "\n".join(out)


def read_samples(folder: str | Path, tasks: Iterable[str] | None = None) -> dict[str, list[dict]]:
    """lm-eval's ``samples_<task>_<time>.jsonl`` files in ``folder`` (newest per task)."""
    return {task: read_rows(p) for task, p in samples_files(folder, tasks).items()}
