"""The long-context heat map's data: per model, each length x depth cell's outcomes over the
long-context tasks on the board, with its Wilson interval (docs/long-context.md).

A long-context task is one whose config carries ``lc_kind`` in its metadata; its samples
file holds, per document, the cell (``length``, ``depth``), whether it was applicable (and
why not) and ``acc``. Cells that are not applicable are kept as such, with the reason: they
are never scored 0.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from slm_tasks.results import stats
from slm_tasks.results.errors import BoardError
from slm_tasks.results.inputs import text_lines


def is_long_context(task_run) -> bool:
    return bool((task_run.config.get("metadata") or {}).get("lc_kind"))


def cell_docs(samples_path) -> list[dict[str, Any]]:
    """(length, depth, applicable, reason, acc) of each document of one samples file."""
    out = []
    for lineno, line in text_lines(samples_path, "samples file"):
        try:
            row = json.loads(line)
            doc = row["doc"]
            out.append(
                {
                    "length": int(doc["length"]),
                    "depth": float(doc["depth"]),
                    "applicable": bool(doc["applicable"]),
                    "reason": str(doc.get("reason") or ""),
                    "acc": row.get("acc"),
                }
            )
        except (ValueError, KeyError, TypeError):
            raise BoardError(
                f"{samples_path}: line {lineno} is not a long-context sample (doc.length, doc.depth, "
                f"doc.applicable); rerun the task with --log_samples"
            ) from None
    return out


def applicable_outcomes(samples_path, metric: str) -> list[float] | None:
    """``metric`` of the applicable documents (the ones lm-eval averaged), or None when one
    of them lacks it."""
    out = []
    for _, line in text_lines(samples_path, "samples file"):
        try:
            row = json.loads(line)
            if not row["doc"]["applicable"]:
                continue
            value = row[metric]
        except (ValueError, KeyError, TypeError):
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        out.append(float(value))
    return out


def heatmap(docs: list[dict[str, Any]], level: float) -> list[dict[str, Any]]:
    """One entry per (length, depth): k of n with the Wilson interval, or why not applicable."""
    groups: dict[tuple[int, float], list[dict]] = defaultdict(list)
    for d in docs:
        groups[(d["length"], d["depth"])].append(d)
    cells = []
    for (length, depth), ds in sorted(groups.items()):
        scored = [float(d["acc"]) for d in ds if d["applicable"] and isinstance(d["acc"], (int, float))]
        cell: dict[str, Any] = {"length": length, "depth": depth, "n": len(scored), "k": sum(scored)}
        if scored:
            lo, hi = stats.wilson(sum(scored), len(scored), level)
            cell.update(value=round(sum(scored) / len(scored), 6), low=round(lo, 6), high=round(hi, 6))
            cell["not_applicable"] = None
        else:
            cell.update(value=None, low=None, high=None)
            cell["not_applicable"] = next((d["reason"] for d in ds if d["reason"]), "no applicable document")
        cells.append(cell)
    return cells


def long_context_section(columns, by_task, level: float, notes: list[str]) -> dict[str, Any] | None:
    """The board's ``long_context``: the lengths, depths and each model's heat map (its
    long-context tasks' documents together), or None when no such task is on the board."""
    tasks = [
        c["task"]
        for c in columns
        if by_task.get(c["task"]) and is_long_context(by_task[c["task"]][0][1].tasks[c["task"]])
    ]
    if not tasks:
        return None
    docs: dict[str, list[dict]] = defaultdict(list)
    for task in tasks:
        for model, run in by_task[task]:
            tr = run.tasks[task]
            if tr.samples_path is None:
                notes.append(f"model '{model}': {task} has no samples file; not in the long-context heat map")
                continue
            docs[model] += cell_docs(tr.samples_path)
    models = {m: heatmap(ds, level) for m, ds in sorted(docs.items())}
    every = [c for cells in models.values() for c in cells]
    return {
        "title": "Long context: length x depth",
        "tasks": tasks,
        "lengths": sorted({c["length"] for c in every}),
        "depths": sorted({c["depth"] for c in every}),
        "models": models,
    }
