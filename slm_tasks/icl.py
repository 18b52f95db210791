"""In-context learning (ICL): the same task at 0, 1 and 5 shots, and the gain from shots.

The ``slm_icl`` group (task_configs/icl/) runs the SLM survey protocol: arc_challenge,
hellaswag, winogrande, mmlu, commonsense_qa, piqa and openbookqa, each at 0, 1 and 5
shots, as tasks named ``slm_icl_<task>_<k>shot`` (``_lite`` for the 200-doc subsets).
truthfulqa_mc2, the survey's eighth task, has no split to draw examples from other than
the one it scores, so it has no few-shot variants (see :data:`NOT_APPLICABLE`).

This module:

* :func:`icl_gain` - the k-shot minus 0-shot accuracy per task and averaged over tasks,
  with a standard error: paired per-document differences when per-sample results are
  given (the same documents are scored at every shot count), otherwise from the two
  reported standard errors (unpaired; says so);
* :func:`available_variants` - which ICL tasks can run against a data mirror, and why the
  others are skipped (a mirror may lack the split few-shot examples come from).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from slm_tasks.errors import SLMError
from slm_tasks.leaderboards import stats
from slm_tasks.leaderboards.samples import DocScores, doc_scores, read_rows, samples_files

SHOTS = (0, 1, 5)
TASKS = ("arc_challenge", "hellaswag", "winogrande", "mmlu", "commonsense_qa", "piqa", "openbookqa")
NOT_APPLICABLE = {
    "truthfulqa_mc2": (
        "truthfulqa_mc2 has one split (validation), which is the one scored, so there is nowhere "
        "to draw few-shot examples from; lm-eval's truthfulqa_mc2 pins num_fewshot: 0 (a fixed "
        "6-QA preamble is part of every prompt) and ignores --num_fewshot, so its '1-shot' and "
        "'5-shot' scores would equal its 0-shot score. Its 0-shot score is slm_truthfulqa_mc2."
    )
}
NAME = re.compile(r"^slm_icl_(?P<base>.+)_(?P<shots>\d+)shot(?P<lite>_lite)?$")


class ICLError(SLMError):
    """ICL results cannot be compared as asked; the message says why and what to do."""


def task_name(base: str, shots: int, lite: bool = False) -> str:
    return f"slm_icl_{base}_{shots}shot" + ("_lite" if lite else "")


def parse_name(name: str) -> tuple[str, int, bool] | None:
    """``slm_icl_mmlu_5shot_lite`` -> ("mmlu", 5, True); None for other names."""
    m = NAME.match(name)
    return (m["base"], int(m["shots"]), bool(m["lite"])) if m else None


# --- the gain ---------------------------------------------------------------------------


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
    :class:`~slm_tasks.leaderboards.samples.DocScores` as the board reads them. With samples for both shot counts of a task, the
    stderr is that of the mean paired difference over documents, matched by ``doc_id``
    (and ``doc_hash`` when logged). Otherwise it is ``sqrt(se_low^2 + se_high^2)`` from
    lm-eval's stderrs, which ignores the (usually positive) correlation between the two
    runs on the same documents and so overstates the uncertainty.

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
            diffs = _paired_diffs(_by_filter(samples[t_low], t_low), _by_filter(samples[t_high], t_high),
                                  metric, filter_name, t_low, t_high)
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


def _paired_diffs(s_low: Mapping[str, DocScores], s_high: Mapping[str, DocScores],
                  metric, filter_name, t_low, t_high) -> list[float]:
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
        "mean", low, high,
        sum(g.low for g in gains) / t, sum(g.high for g in gains) / t,
        sum(g.gain for g in gains) / t, se, "+".join(methods),
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


# --- which variants can run --------------------------------------------------------------


@dataclass
class Variants:
    """``run``: task/group names to pass to lm-eval; ``skipped``: ICL task -> reason."""

    run: list[str]
    skipped: dict[str, str]


def _icl_dir() -> Path:
    from slm_tasks.activation import task_dir

    return task_dir() / "icl"


def _icl_configs() -> tuple[dict[str, dict], dict[str, list[str]]]:
    """ICL task name -> resolved YAML (functions unresolved); group name -> members."""
    from lm_eval.tasks._yaml_loader import load_yaml

    tasks, groups = {}, {}
    for p in sorted(_icl_dir().glob("*.yaml")):
        cfg = load_yaml(p, resolve_func=False)
        if "group" in cfg:
            groups[cfg["group"]] = list(cfg["task"])
        else:
            tasks[cfg["task"]] = cfg
    return tasks, groups


def available_variants(task_names: Iterable[str], data_dir: str | Path | None = None) -> Variants:
    """Which ICL tasks among ``task_names`` can run against the mirror ``data_dir``.

    ``data_dir`` defaults to ``$SLM_DATA_DIR``; with neither, data comes from the hub and
    every variant runs. A k-shot variant (k > 0) is skipped when the mirror lacks the split
    its few-shot examples come from (it is never replaced by the split being scored); any
    variant is skipped when the mirror lacks its eval data. ICL groups are kept whole when
    all their members run, else replaced by the members that run. Names that are not ICL
    tasks pass through unchanged.
    """
    from slm_tasks import data

    root = data.data_dir(data_dir)
    tasks, groups = _icl_configs()
    skipped: dict[str, str] = {}

    def why_not(name: str) -> str | None:
        if root is None:
            return None
        kw = tasks[name].get("dataset_kwargs") or {}
        hub_id, config = kw.get("hub_id"), kw.get("hub_config")
        configs = kw.get("hub_configs") or [config]
        shots = int(tasks[name].get("num_fewshot") or 0)
        for cfg in configs:
            repo = root / hub_id
            if not repo.is_dir():
                return f"the mirror {root} has no {hub_id}/"
            try:
                files = data.mirror_files(repo, cfg)
            except data.SLMDataError as exc:
                return str(exc)
            label = f"{hub_id} ({cfg or 'default'})"
            if kw.get("eval_split") and kw["eval_split"] not in files:
                return f"the mirror {root} has no '{kw['eval_split']}' split of {label}"
            fs = kw.get("fewshot_split")
            if shots > 0 and fs and fs not in files:
                return (
                    f"{shots}-shot needs few-shot examples from the '{fs}' split of {label}, which "
                    f"the mirror {root} lacks (examples are never drawn from the split being scored); "
                    f"use the hub or a mirror with that split"
                )
        return None

    def expand(name: str) -> list[str]:
        if name in groups:
            parts = [x for m in groups[name] for x in expand(m)]
            return [name] if parts == groups[name] else parts
        if name in tasks:
            reason = why_not(name)
            if reason:
                skipped[name] = reason
                return []
        return [name]

    run = [x for name in task_names for x in expand(name)]
    return Variants(run=list(dict.fromkeys(run)), skipped=skipped)
