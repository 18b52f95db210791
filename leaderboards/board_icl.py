"""The board's in-context learning columns: the k-shot minus 0-shot gain of each model.

The gain is :func:`slm_tasks.results.icl_gain.icl_gain` on the model's ICL variants (paired on the same
documents when samples exist), per task and averaged. It is shown beside the overall score,
never inside it: the 0-shot variants are the base tasks again.
"""

from __future__ import annotations

from typing import Any

from slm_tasks.errors import SLMError
from slm_tasks.leaderboards.ingest import Run
from slm_tasks.leaderboards.spec import Spec
from slm_tasks.results.errors import BoardError

METHOD = (
    "{high}-shot minus {low}-shot {metric} per task, paired on the same documents when "
    "samples exist (else from the two stderrs, unpaired); the mean is the plain average over "
    "tasks with both shot counts; outside the overall score"
)


def icl_section(
    spec: Spec, entries: list[tuple[str, str, Run]], notes: list[str]
) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """(the board's ``icl`` header or None, model -> its row's ``icl`` cell)."""
    icl = spec.icl
    variants = set(spec.icl_tasks({t for _, t, _ in entries}))
    if icl is None or not variants:
        return None, {}
    from slm_tasks.results.icl_gain import icl_gain

    metric, _, flt = icl.metric.partition(",")
    by_model: dict[str, dict[str, Run]] = {}
    for model, task, run in entries:
        if task in variants:
            by_model.setdefault(model, {})[task] = run
    cells, labels = {}, set()
    for model, runs in sorted(by_model.items()):
        results = {
            "results": {t: r.tasks[t].scores for t, r in runs.items()},
            "n-shot": {t: r.tasks[t].n_shot for t, r in runs.items() if r.tasks[t].n_shot is not None},
        }
        samples = {t: r.tasks[t].all_samples() for t, r in runs.items() if r.tasks[t].samples_path}
        try:
            out = icl_gain(results, samples, low=icl.low, high=icl.high, metric=metric, filter_name=flt)
        except BoardError:
            raise
        except SLMError as exc:
            files = ", ".join(sorted({str(r.path) for r in runs.values()}))
            raise BoardError(f"model '{model}' ({files}): {exc}") from None
        cells[model] = {
            "mean": _cell(out["mean"], spec.level),
            "tasks": {label: _cell(g, spec.level) for label, g in out["tasks"].items()},
        }
        labels |= set(out["tasks"])
        for label, why in out["skipped"].items():
            notes.append(f"model '{model}': ICL gain of {label} not shown: {why}")
    header = {
        "title": icl.title,
        "metric": icl.metric,
        "low_shots": icl.low,
        "high_shots": icl.high,
        "tasks": sorted(labels),
        "variants": sorted(variants),
        "method": METHOD.format(high=icl.high, low=icl.low, metric=icl.metric),
    }
    return header, cells


def _cell(gain, level: float) -> dict[str, Any]:
    empty = {
        "value": None,
        "low": None,
        "high": None,
        "method": "none",
        "se": None,
        "n": None,
        "low_shots_value": None,
        "high_shots_value": None,
    }
    if gain is None:
        return empty
    r = lambda x: None if x is None else round(float(x), 6)  # noqa: E731
    lo, hi = gain.interval(level) or (None, None)
    return {
        "value": r(gain.gain),
        "low": r(lo),
        "high": r(hi),
        "method": gain.method,
        "se": r(gain.stderr),
        "n": gain.n,
        "low_shots_value": r(gain.low),
        "high_shots_value": r(gain.high),
    }
