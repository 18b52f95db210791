"""A quantised format's quality against the sweep's reference, from the two runs' samples.

* per task and per domain: the paired difference (format - reference) of the board spec's
  metric on the documents both scored, its normal interval from the per-document
  differences, and an exact paired test (the sign test on the documents whose outcome
  differs: for 0/1 outcomes, the exact McNemar test);
* multiple-choice tasks: the KL divergence D(reference || format) of each question's choice
  distribution (softmax over the choices' log-likelihoods) — mean and 99th percentile — and
  the share of questions where both pick the same choice (the highest log-likelihood, acc's
  rule), as ``llama-perplexity --kl-divergence`` reports them for next tokens;
* generation tasks: the share of documents whose output is identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

import slm_tasks.leaderboards.gate_stats as gate_stats
from slm_tasks.results import stats
from slm_tasks.results.samples import read_rows


def choice_distribution(logliks) -> np.ndarray:
    """Softmax over the choices' log-likelihoods, in float64."""
    x = np.asarray(logliks, dtype=np.float64)
    x = np.exp(x - x.max())
    return x / x.sum()


def kl_divergence(p, q) -> float:
    """D(p || q) in nats; p is the reference. Choices p gives no mass add nothing."""
    from scipy.special import rel_entr

    return float(np.sum(rel_entr(np.asarray(p, float), np.asarray(q, float))))


@dataclass
class Paired:
    """Paired difference of per-document outcomes, format - reference."""

    n: int
    diff: float
    low: float
    high: float
    p_value: float  # two-sided exact sign test on the documents that differ (McNemar on 0/1)
    worse: int  # documents where the format scores lower
    better: int
    reference: float = math.nan  # the reference's score on the shared documents (plain mean of tasks)
    value: float = math.nan  # the format's


def sign_test(worse: int, better: int) -> float:
    """Two-sided exact sign test: under no difference, a differing document is as likely to go
    either way (Binomial(worse + better, 1/2)); 1.0 when no document differs."""
    from scipy.stats import binomtest

    d = worse + better
    return 1.0 if d == 0 else float(binomtest(worse, d, 0.5, alternative="two-sided").pvalue)


def paired_task(ref, fmt, level: float = 0.95) -> tuple[stats.Estimate, int, int, float]:
    """One task's paired difference (format - reference) as an Estimate, with the documents
    the format scores lower / higher and the reference's mean. 0/1 outcomes: Tango's score
    interval (the gate's; it does not collapse to a point when no document differs); other
    values: the normal interval of the mean per-document difference."""
    ref, fmt = np.asarray(ref, float), np.asarray(fmt, float)
    d = fmt - ref
    worse, better = int(np.sum(d < 0)), int(np.sum(d > 0))
    diff = float(d.mean())
    se = float(d.std(ddof=1)) / math.sqrt(d.size) if d.size > 1 else 0.0
    if stats.is_binary(ref) and stats.is_binary(fmt):
        lo, hi = gate_stats.tango_interval(worse, better, d.size, level)
        method = "tango"
    else:
        lo, hi = stats.normal_interval(diff, se, level)
        method = "stderr"
    return stats.Estimate(diff, lo, hi, method, se, d.size), worse, better, float(ref.mean())


def paired_tasks(tasks: list[tuple[np.ndarray, np.ndarray]], level: float = 0.95) -> Paired:
    """One task (``[(ref, fmt)]``) or a domain (its tasks): the difference is the plain mean of
    the tasks' differences (the domain score is the plain mean of its tasks), its interval the
    tasks' intervals combined by MOVER (``stats.mean_estimate``, as the board combines a
    domain), the test the exact sign test on every document that differs."""
    parts = [paired_task(ref, fmt, level) for ref, fmt in tasks if len(ref)]
    if not parts:
        return Paired(0, math.nan, math.nan, math.nan, math.nan, 0, 0)
    est = stats.mean_estimate([p[0] for p in parts], level)
    worse, better = sum(p[1] for p in parts), sum(p[2] for p in parts)
    reference = sum(p[3] for p in parts) / len(parts)
    n = sum(p[0].n for p in parts)
    p_value = sign_test(worse, better)
    return Paired(n, est.value, est.low, est.high, p_value, worse, better, reference, reference + est.value)


@dataclass
class TaskQuality:
    task: str
    domain: str | None
    metric: str
    kind: str  # "multiple_choice" | "generation" | "other"
    reference: np.ndarray  # per-document outcomes on the shared documents, in doc order
    outcome: np.ndarray
    kl: list[float] = field(default_factory=list)  # per question (multiple choice)
    same_answer: int = 0  # multiple choice: same choice; generation: identical output
    compared: int = 0  # questions / outputs compared for same_answer


def _rows_by_doc(path, flt: str) -> dict[int, dict]:
    return {int(r["doc_id"]): r for r in read_rows(path) if r.get("filter", "none") == flt}


def _logliks(row: dict) -> list[float] | None:
    """The choices' log-likelihoods of a multiple-choice row (``resps`` [[[ll, greedy]], ...])."""
    resps = row.get("resps") or []
    try:
        out = [float(r[0][0]) for r in resps]
    except (TypeError, ValueError, IndexError):
        return None
    return out if len(out) >= 2 and all(math.isfinite(x) for x in out) else None


def _output(row: dict) -> str | None:
    """A generation row's first output (``resps`` [[text]])."""
    resps = row.get("resps") or []
    try:
        first = resps[0][0]
    except (TypeError, IndexError):
        return None
    return first if isinstance(first, str) else None


def compare_task(task: str, domain, metric: str, ref_samples, fmt_samples, output_type) -> TaskQuality:
    """``ref_samples`` / ``fmt_samples``: the two runs' samples files of ``task``."""
    name, _, flt = metric.partition(",")
    ref, fmt = _rows_by_doc(ref_samples, flt or "none"), _rows_by_doc(fmt_samples, flt or "none")
    shared = sorted(set(ref) & set(fmt))
    kind = {"multiple_choice": "multiple_choice", "generate_until": "generation"}.get(output_type, "other")
    values = [(ref[i].get(name), fmt[i].get(name)) for i in shared]
    pairs = [(float(a), float(b)) for a, b in values if _number(a) and _number(b)]
    q = TaskQuality(task, domain, metric, kind, np.array([a for a, _ in pairs]), np.array([b for _, b in pairs]))
    for i in shared:
        if kind == "multiple_choice":
            a, b = _logliks(ref[i]), _logliks(fmt[i])
            if a is None or b is None or len(a) != len(b):
                continue
            q.kl.append(kl_divergence(choice_distribution(a), choice_distribution(b)))
            q.same_answer += int(np.argmax(a) == np.argmax(b))
            q.compared += 1
        elif kind == "generation":
            a, b = _output(ref[i]), _output(fmt[i])
            if a is None or b is None:
                continue
            q.same_answer += int(a == b)
            q.compared += 1
    return q


def _number(x) -> bool:
    return isinstance(x, bool) or isinstance(x, (int, float)) and math.isfinite(x)


def compare_runs(reference, fmt, spec) -> list[TaskQuality]:
    """Every task of ``spec``'s capability domains that both runs (``ingest.Run``) scored with
    samples, compared on the spec's metric."""
    shared = set(reference.tasks) & set(fmt.tasks)
    out = []
    for domain, entry, task in spec.resolve(shared):
        if task not in shared:
            continue
        a, b = reference.tasks[task], fmt.tasks[task]
        metric = entry.pick_metric(lambda m: a.value(m) is not None and b.value(m) is not None)  # noqa: B023
        if metric is None or a.samples_path is None or b.samples_path is None:
            continue
        out.append(compare_task(task, domain.name, metric, a.samples_path, b.samples_path, a.output_type))
    return out


def summary(tasks: list[TaskQuality], level: float = 0.95) -> dict:
    """Per task and per domain: the paired difference, its interval and the exact test; over
    the multiple-choice questions: KL mean and 99th percentile, same-answer rate; over the
    generations: the identical share."""
    domains: dict[str, list[TaskQuality]] = {}
    for t in tasks:
        domains.setdefault(t.domain or "(no domain)", []).append(t)
    kl = [x for t in tasks for x in t.kl]
    mc = [t for t in tasks if t.kind == "multiple_choice"]
    gen = [t for t in tasks if t.kind == "generation"]
    return {
        "tasks": {t.task: _paired_dict(paired_tasks([(t.reference, t.outcome)], level)) | _agreement(t) for t in tasks},
        "domains": {
            d: _paired_dict(paired_tasks([(t.reference, t.outcome) for t in ts], level)) for d, ts in domains.items()
        },
        "kl_mean": float(np.mean(kl)) if kl else None,
        "kl_p99": float(np.percentile(kl, 99)) if kl else None,
        "kl_questions": len(kl),
        "same_answer": _rate(sum(t.same_answer for t in mc), sum(t.compared for t in mc)),
        "identical_outputs": _rate(sum(t.same_answer for t in gen), sum(t.compared for t in gen)),
        "level": level,
    }


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def _paired_dict(p: Paired) -> dict:
    return {
        "n": p.n,
        "diff": p.diff,
        "low": p.low,
        "high": p.high,
        "p_value": p.p_value,
        "worse": p.worse,
        "better": p.better,
        "reference": p.reference,
        "value": p.value,
    }


def _agreement(t: TaskQuality) -> dict:
    out = {"kind": t.kind, "metric": t.metric}
    if t.kind == "multiple_choice" and t.kl:
        out |= {"kl_mean": float(np.mean(t.kl)), "kl_p99": float(np.percentile(t.kl, 99))}
        out["same_answer"] = _rate(t.same_answer, t.compared)
    elif t.kind == "generation":
        out["identical_outputs"] = _rate(t.same_answer, t.compared)
    return out
