"""Join validated runs into the leaderboard data (the content of leaderboard.json).

What a domain and the overall score are is defined once, in the spec
(:func:`slm_tasks.leaderboards.spec.combine`); the ICL gain columns come from board_icl.
"""

from __future__ import annotations

import datetime as _dt
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

import slm_tasks.leaderboards.publish as publish
import slm_tasks.leaderboards.validate as validate
from slm_tasks import __version__
from slm_tasks.leaderboards.board_icl import icl_section
from slm_tasks.leaderboards.cost_columns import cost_and_pareto
from slm_tasks.leaderboards.ingest import Run
from slm_tasks.leaderboards.long_context import applicable_outcomes, is_long_context, long_context_section
from slm_tasks.leaderboards.spec import COST_COLUMNS, Spec, combine
from slm_tasks.results import stats
from slm_tasks.results.errors import BoardError

BOARD_SCHEMA = "slm-suite.leaderboard/1"
MISSING = "—"


def build_board(runs: list[Run], spec: Spec, allow_limit: bool | None = None) -> dict[str, Any]:
    """Validate, score and rank; return the leaderboard document (JSON-serialisable)."""
    allow_limit = spec.allow_limit if allow_limit is None else allow_limit
    present = {t for r in runs for t in r.tasks}
    resolved = spec.resolve(present)
    # the ICL variants are validated like every board task, and scored only as gains
    declared = [name for _, _, name in resolved] + spec.icl_tasks(present)
    notes: list[str] = []

    # Which runs bring which board tasks; runs with none are reported and left out.
    entries = [(r.model, t, r) for r in runs for t in r.tasks if t in declared]
    used = {id(r) for _, _, r in entries}
    for r in runs:
        if id(r) not in used:
            notes.append(
                f"{r.path}: none of its tasks ({', '.join(sorted(r.tasks)) or 'none'}) is on this board; ignored"
            )
    if not entries:
        raise BoardError(
            f"none of the result files has a task of board '{spec.name}' "
            f"({', '.join(declared[:6]) or 'no tasks resolved'}...); "
            f"use the spec that matches the runs (e.g. --spec lite for *_lite tasks)"
        )
    board_runs = [r for r in runs if id(r) in used]
    notes += [n for r in board_runs for n in r.notes]  # what reading its files skipped

    spec.check_versions(board_runs)  # one definition of the scores per board
    problems = validate.check_limits(board_runs, allow_limit)
    problems += validate.check_duplicates(entries)
    by_task: dict[str, list[tuple[str, Run]]] = defaultdict(list)
    for model, task, run in entries:
        by_task[task].append((model, run))
    for task, es in by_task.items():
        p, n = validate.check_consistency(task, es)
        problems += p
        notes += n
    if problems:
        raise BoardError.many(problems, "results cannot share one board")

    rng = np.random.default_rng(spec.seed)
    models = sorted({m for m, _, _ in entries})
    cell: dict[tuple[str, str], tuple[Run, Any]] = {(m, t): (r, r.tasks[t]) for m, t, r in entries}

    # Columns: one per declared task found in the results; the metric is the first listed
    # alternative that any model reports, so a column never mixes metrics.
    columns, missing = [], []
    for domain, entry, task in resolved:
        if task not in by_task:
            missing.append(task)
            continue
        metric = entry.pick_metric(lambda m: any(cell[(m_, task)][1].value(m) is not None for m_, _ in by_task[task]))  # noqa: B023
        if metric is None:
            notes.append(f"task {task}: none of the metrics {entry.metrics} in its results; column left out")
            missing.append(task)
            continue
        columns.append(_column(task, metric, domain, entry, [cell[(m, task)][1] for m, _ in by_task[task]]))
    for d in spec.domains:
        for t in d.tasks:
            if t.match and not any(c["task"] in present and _matches(c, t) for c in columns):
                missing.append(t.match)

    scores = {}  # (model, task) -> Estimate
    for col in columns:
        for model, run in by_task[col["task"]]:
            tr = run.tasks[col["task"]]
            est, note = _task_estimate(tr, col["metric"], spec, rng)
            if note:
                notes.append(f"model '{model}': {note}")
            if est is not None:
                scores[(model, col["task"])] = est

    domain_cols = []
    for d in spec.domains:
        tasks = [c["task"] for c in columns if c["domain"] == d.name]
        if tasks:
            domain_cols.append(
                {
                    "id": f"domain:{d.name}",
                    "domain": d.name,
                    "title": d.title,
                    "tasks": tasks,
                    "missing": [t for t in missing if t in {n for dd, _, n in resolved if dd is d}],
                }
            )
        else:
            notes.append(f"domain {d.name}: no task present; left out of the overall score")

    icl_header, icl_cells = icl_section(spec, entries, notes)
    board_tasks = [c["task"] for c in columns] + (icl_header["variants"] if icl_header else [])
    rows = []
    for model in models:
        row = _row(model, columns, domain_cols, scores, cell, spec, notes, board_tasks)
        if icl_header:
            row["icl"] = icl_cells.get(model) or {"mean": None, "tasks": {}}
        rows.append(row)
    rows.sort(key=lambda r: (r["overall"]["value"] is None, -(r["overall"]["value"] or 0), r["model"]))
    rank_with_ties(rows)
    pareto_axes = cost_and_pareto(rows, board_runs_by_model(entries), spec, notes)

    limit_runs = sorted({str(r.path) for r in board_runs if r.limit is not None})
    names = publish.run_names([r.path for r in runs])
    for row in rows:
        for f in row["provenance"]["files"]:
            f["path"] = names.get(f["path"], f["path"].name)
    board = {
        "schema": BOARD_SCHEMA,
        "generated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "generator": f"slm-suite {__version__}",
        "spec": {
            "name": spec.name,
            "title": spec.title,
            "profile": spec.profile,
            "source": Path(spec.source).name if spec.source.endswith((".yaml", ".yml")) else spec.source,
            "hardware_profile": spec.hardware,
            "normalized": spec.normalize,
        },
        "smoke": bool(limit_runs),
        "smoke_reason": (
            f"built from {len(limit_runs)} run(s) made with --limit: not for publication" if limit_runs else None
        ),
        "intervals": {
            "level": spec.level,
            "bootstrap_iters": spec.bootstrap_iters,
            "seed": spec.seed,
            "methods": {
                "wilson": "Wilson score interval on the per-doc 0/1 outcomes (samples file)",
                "bootstrap": "percentile bootstrap over documents (samples file)",
                "stderr": "normal interval from lm-eval's reported stderr (no samples file), clamped to [0, 1]",
                "mover": "domain/overall of several parts: MOVER on the parts' intervals, "
                "mean - sqrt(sum (v - low)^2)/k to mean + sqrt(sum (high - v)^2)/k; "
                "of one part: that part's interval",
                "paired": "ICL gain: normal interval from the per-document differences (samples files)",
                "unpaired": "ICL gain: normal interval from the two stderrs, sqrt(se_a^2 + se_b^2)",
                "none": "no interval: neither samples nor stderr",
            },
        },
        "columns": columns,
        "domains": domain_cols,
        "icl": icl_header,
        "long_context": long_context_section(columns, by_task, spec.level, notes),
        "missing_tasks": missing,
        "cost_columns": [
            {"id": c, "title": COST_COLUMNS[c][0], "unit": COST_COLUMNS[c][1], "lower_is_better": COST_COLUMNS[c][2]}
            for c in spec.cost_columns
        ],
        "pareto_axes": pareto_axes,
        "rows": rows,
        "notes": notes,
    }
    # what is published names files relative to the runs' folder and no local path
    replace = {}
    for path, name in names.items():
        replace[str(path)] = replace[str(path.resolve())] = name
    return publish.scrub(board, replace)


def rank_with_ties(rows: list[dict[str, Any]]) -> None:
    """Competition ranking ("1, 1, 1, 4") of rows sorted best first: equal overall scores (as
    published, to 6 digits) share the best rank among them and are marked ``tied``."""
    scores = [r["overall"]["value"] for r in rows if r["overall"]["value"] is not None]
    for row in rows[: len(scores)]:
        row["rank"] = scores.index(row["overall"]["value"]) + 1
        row["tied"] = scores.count(row["overall"]["value"]) > 1
    for row in rows[len(scores) :]:
        row["rank"], row["tied"] = None, False


def _matches(col, entry) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(col["task"], entry.match)


def board_runs_by_model(entries) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = defaultdict(list)
    for model, _, run in entries:
        if all(run is not r for r in out[model]):
            out[model].append(run)
    return out


def _column(task, metric, domain, entry, trs) -> dict[str, Any]:
    tr = trs[0]
    name, _, flt = metric.partition(",")
    hib = tr.higher_is_better.get(name, True)
    # Chance accuracy on multiple choice = mean of 1/choices over the docs; tasks with their own
    # process_results (e.g. truthfulqa mc2: probability mass) have no such chance level.
    baseline, source = None, None
    if tr.output_type == "multiple_choice" and name in ("acc", "acc_norm") and not tr.config.get("process_results"):
        ds = tr.samples(flt)
        if ds is not None and ds.n_choices and all(ds.n_choices.values()):
            baseline, source = float(np.mean([1 / k for k in ds.n_choices.values()])), "samples (1/choices)"
    if baseline is None and entry.random_baseline is not None:
        baseline, source = float(entry.random_baseline), "spec"
    if baseline is None:
        baseline, source = 0.0, "none (0)"
    return {
        "id": f"task:{task}",
        "task": task,
        "title": entry.title or tr.config.get("task_alias") or task,
        "domain": domain.name,
        "metric": metric,
        "higher_is_better": bool(hib),
        "shots": tr.n_shot,
        "split": tr.split,
        "version": tr.version,
        "dataset": tr.dataset,
        "output_type": tr.output_type,
        "random_baseline": baseline,
        "random_baseline_source": source,
    }


def _task_estimate(tr, metric, spec, rng):
    value = tr.value(metric)
    if value is None:
        return None, None
    name, _, flt = metric.partition(",")
    per_doc, note = None, None
    ds = tr.samples(flt)
    if ds is not None:
        vals = ds.numeric(name)
        if vals is None and is_long_context(tr):  # cells not applicable carry no acc
            vals = applicable_outcomes(tr.samples_path, name)
        if vals is not None and vals and abs(np.mean(vals) - value) <= 1e-6:
            per_doc = np.asarray(vals)
        else:
            note = f"{tr.name}: samples file does not reproduce {metric} ({tr.samples_path.name}); interval from stderr"
    return stats.task_estimate(value, per_doc, tr.stderr(metric), spec.level, spec.bootstrap_iters, rng), note


def _row(model, columns, domain_cols, scores, cell, spec, notes, board_tasks) -> dict[str, Any]:
    tasks, norm = {}, {}
    for col in columns:
        e = scores.get((model, col["task"]))
        if e is not None:
            tasks[col["task"]] = e
            norm[col["task"]] = stats.normalise(e, col["random_baseline"])
    layout = {d["domain"]: d["tasks"] for d in domain_cols}
    mean = lambda parts: stats.mean_estimate(parts, spec.level)  # noqa: E731
    domains, overall = combine(tasks, layout, mean)
    domains_n, overall_n = combine(norm, layout, mean)
    if overall is None:
        lacking = [t for d in domain_cols for t in d["tasks"] if t not in tasks]
        notes.append(f"model '{model}': no overall score, missing {', '.join(lacking)}")
    runs = []
    for task in board_tasks:
        if (model, task) in cell:
            r = cell[(model, task)][0]
            if all(r is not x for x in runs):
                runs.append(r)
    empty = {"value": None, "low": None, "high": None, "method": "none", "se": None, "n": None}
    row = {
        "model": model,
        "overall": overall.to_json() if overall else dict(empty),
        "domains": {
            d["domain"]: (domains[d["domain"]].to_json() if d["domain"] in domains else dict(empty))
            for d in domain_cols
        },
        "tasks": {t: e.to_json() for t, e in tasks.items()},
        "provenance": _provenance(model, runs, board_tasks),
    }
    if spec.normalize:
        row["normalized"] = {
            "overall": overall_n.to_json(4) if overall_n else dict(empty),
            "domains": {k: v.to_json(4) for k, v in domains_n.items()},
            "tasks": {t: e.to_json(4) for t, e in norm.items()},
        }
    return row


def _provenance(model, runs: list[Run], board_tasks: list[str]) -> dict[str, Any]:
    out = {"files": [], "hardware": None, "software": None, "model": None}
    for r in runs:
        mine = [t for t in board_tasks if t in r.tasks]
        out["files"].append(
            {
                "path": r.path,
                "tasks": mine,
                "sha256": publish.file_digest(r.path),
                "limit": r.limit,
                "lm_eval_version": r.results.get("lm_eval_version"),
                "git_hash": r.results.get("git_hash"),
                "date": r.results.get("date"),
                "model_source": r.results.get("model_source"),
                "model_args": r.config.get("model_args"),
                "cost_source": r.cost_source,
                "versions": {t: r.tasks[t].version for t in mine},
                "n_shot": {t: r.tasks[t].n_shot for t in mine},
                "task_hashes": {t: r.tasks[t].task_hash for t in mine},
                "data": {t: r.tasks[t].dataset for t in mine},
                "samples": {t: r.tasks[t].samples_path.name if r.tasks[t].samples_path else None for t in mine},
            }
        )
        if r.cost:
            out["hardware"] = out["hardware"] or r.cost.hardware or None
            out["software"] = out["software"] or r.cost.software or None
            out["model"] = out["model"] or publish.model_identity(r.cost.model or None)
    return out
