"""Join validated runs into the leaderboard data (the content of leaderboard.json)."""

from __future__ import annotations

import datetime as _dt
import math
from collections import defaultdict
from typing import Any

import numpy as np

from slm_tasks import __version__
from slm_tasks.leaderboards import stats, validate
from slm_tasks.leaderboards.errors import BoardError
from slm_tasks.leaderboards.ingest import Run
from slm_tasks.leaderboards.spec import COST_COLUMNS, Spec

BOARD_SCHEMA = "slm-suite.leaderboard/1"
# Pareto plots: axis -> candidate cost measures (column, label, value as plotted), first found wins
PARETO_AXES = {
    "latency": [
        ("decode_ms_per_token", "decode latency (ms/token)", lambda v: v),
        ("ttft_ms", "first-token latency (ms)", lambda v: v),
        ("prefill_tok_s", "prefill time (ms per prompt token = 1000 / prefill tokens/s)", lambda v: 1000.0 / v),
    ],
    "memory": [("peak_memory_bytes", "peak memory (GB)", lambda v: v / 1e9)],
}
MISSING = "—"


def build_board(runs: list[Run], spec: Spec, allow_limit: bool | None = None) -> dict[str, Any]:
    """Validate, score and rank; return the leaderboard document (JSON-serialisable)."""
    allow_limit = spec.allow_limit if allow_limit is None else allow_limit
    present = {t for r in runs for t in r.tasks}
    resolved = spec.resolve(present)
    declared = [name for _, _, name in resolved]
    notes: list[str] = []

    # Which runs bring which board tasks; runs with none are reported and left out.
    entries = [(r.model, t, r) for r in runs for t in r.tasks if t in declared]
    used = {id(r) for _, _, r in entries}
    for r in runs:
        if id(r) not in used:
            notes.append(f"{r.path}: none of its tasks ({', '.join(sorted(r.tasks)) or 'none'}) "
                         f"is on this board; ignored")
    if not entries:
        raise BoardError(
            f"none of the result files has a task of board '{spec.name}' "
            f"({', '.join(declared[:6]) or 'no tasks resolved'}...); "
            f"use the spec that matches the runs (e.g. --spec lite for *_lite tasks)")
    board_runs = [r for r in runs if id(r) in used]

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
        metric = next((m for m in entry.metrics
                       if any(cell[(m_, task)][1].value(m) is not None for m_, _ in by_task[task])), None)
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
            domain_cols.append({"id": f"domain:{d.name}", "domain": d.name, "title": d.title, "tasks": tasks,
                                "missing": [t for t in missing if t in {n for dd, _, n in resolved if dd is d}]})
        else:
            notes.append(f"domain {d.name}: no task present; left out of the overall score")

    rows = []
    for model in models:
        rows.append(_row(model, columns, domain_cols, scores, cell, spec, notes))
    rows.sort(key=lambda r: (r["overall"]["value"] is None, -(r["overall"]["value"] or 0), r["model"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank if row["overall"]["value"] is not None else None
    pareto_axes = _cost_and_pareto(rows, board_runs_by_model(entries), spec, notes)

    limit_runs = sorted({str(r.path) for r in board_runs if r.limit is not None})
    return {
        "schema": BOARD_SCHEMA,
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "generator": f"slm-suite {__version__}",
        "spec": {"name": spec.name, "title": spec.title, "profile": spec.profile, "source": spec.source,
                 "hardware_profile": spec.hardware, "normalized": spec.normalize},
        "smoke": bool(limit_runs),
        "smoke_reason": (f"built from {len(limit_runs)} run(s) made with --limit: not for publication"
                         if limit_runs else None),
        "intervals": {
            "level": spec.level, "bootstrap_iters": spec.bootstrap_iters, "seed": spec.seed,
            "methods": {
                "wilson": "Wilson score interval on the per-doc 0/1 outcomes (samples file)",
                "bootstrap": "percentile bootstrap over documents (samples file); domains/overall "
                             "average the tasks' replicates",
                "stderr": "normal interval from lm-eval's reported stderr (no samples file)",
                "normal": "normal interval from the parts' standard errors, sqrt(sum se^2)/k",
                "none": "no interval: neither samples nor stderr",
            },
        },
        "columns": columns,
        "domains": domain_cols,
        "missing_tasks": missing,
        "cost_columns": [{"id": c, "title": COST_COLUMNS[c][0], "unit": COST_COLUMNS[c][1],
                          "lower_is_better": COST_COLUMNS[c][2]} for c in spec.cost_columns],
        "pareto_axes": pareto_axes,
        "rows": rows,
        "notes": notes,
    }


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
    if (tr.output_type == "multiple_choice" and name in ("acc", "acc_norm")
            and not tr.config.get("process_results")):
        ds = tr.samples(flt)
        if ds is not None and ds.n_choices and all(ds.n_choices.values()):
            baseline, source = float(np.mean([1 / k for k in ds.n_choices.values()])), "samples (1/choices)"
    if baseline is None and entry.random_baseline is not None:
        baseline, source = float(entry.random_baseline), "spec"
    if baseline is None:
        baseline, source = 0.0, "none (0)"
    return {
        "id": f"task:{task}", "task": task, "title": entry.title or tr.config.get("task_alias") or task,
        "domain": domain.name, "metric": metric, "higher_is_better": bool(hib),
        "shots": tr.n_shot, "split": tr.split, "version": tr.version, "dataset": tr.dataset,
        "output_type": tr.output_type, "random_baseline": baseline, "random_baseline_source": source,
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
        if vals is not None and vals and abs(np.mean(vals) - value) <= 1e-6:
            per_doc = np.asarray(vals)
        else:
            note = (f"{tr.name}: samples file does not reproduce {metric} ({tr.samples_path.name}); "
                    f"interval from stderr")
    return stats.task_estimate(value, per_doc, tr.stderr(metric), spec.level, spec.bootstrap_iters, rng), note


def _row(model, columns, domain_cols, scores, cell, spec, notes) -> dict[str, Any]:
    tasks, norm = {}, {}
    for col in columns:
        e = scores.get((model, col["task"]))
        if e is not None:
            tasks[col["task"]] = e
            norm[col["task"]] = stats.normalise(e, col["random_baseline"])
    domains, domains_n = {}, {}
    for d in domain_cols:
        parts = [tasks.get(t) for t in d["tasks"]]
        if all(p is not None for p in parts):
            domains[d["domain"]] = stats.mean_estimate(parts, spec.level)
            domains_n[d["domain"]] = stats.mean_estimate([norm[t] for t in d["tasks"]], spec.level)
    complete = len(domains) == len(domain_cols) and bool(domain_cols)
    overall = stats.mean_estimate(list(domains.values()), spec.level) if complete else None
    overall_n = stats.mean_estimate(list(domains_n.values()), spec.level) if complete else None
    if not complete:
        lacking = [t for d in domain_cols for t in d["tasks"] if t not in tasks]
        notes.append(f"model '{model}': no overall score, missing {', '.join(lacking)}")
    runs = []
    for col in columns:
        if (model, col["task"]) in cell:
            r = cell[(model, col["task"])][0]
            if all(r is not x for x in runs):
                runs.append(r)
    empty = {"value": None, "low": None, "high": None, "method": "none", "se": None, "n": None}
    row = {
        "model": model,
        "overall": overall.to_json() if overall else dict(empty),
        "domains": {d["domain"]: (domains[d["domain"]].to_json() if d["domain"] in domains else dict(empty))
                    for d in domain_cols},
        "tasks": {t: e.to_json() for t, e in tasks.items()},
        "provenance": _provenance(model, runs, columns),
    }
    if spec.normalize:
        row["normalized"] = {
            "overall": overall_n.to_json(4) if overall_n else dict(empty),
            "domains": {k: v.to_json(4) for k, v in domains_n.items()},
            "tasks": {t: e.to_json(4) for t, e in norm.items()},
        }
    return row


def _provenance(model, runs: list[Run], columns) -> dict[str, Any]:
    out = {"files": [], "hardware": None, "software": None, "model": None}
    for r in runs:
        mine = [c["task"] for c in columns if c["task"] in r.tasks]
        out["files"].append({
            "path": str(r.path), "tasks": mine, "limit": r.limit,
            "lm_eval_version": r.results.get("lm_eval_version"), "git_hash": r.results.get("git_hash"),
            "date": r.results.get("date"), "model_source": r.results.get("model_source"),
            "model_args": r.config.get("model_args"), "cost_source": r.cost_source,
            "versions": {t: r.tasks[t].version for t in mine},
            "n_shot": {t: r.tasks[t].n_shot for t in mine},
            "task_hashes": {t: r.tasks[t].task_hash for t in mine},
            "data": {t: r.tasks[t].dataset for t in mine},
            "samples": {t: r.tasks[t].samples_path.name if r.tasks[t].samples_path else None for t in mine},
        })
        if r.cost:
            out["hardware"] = out["hardware"] or r.cost.get("hardware")
            out["software"] = out["software"] or r.cost.get("software")
            out["model"] = out["model"] or r.cost.get("model")
    return out


# ---- cost ------------------------------------------------------------------------------

def _hardware_matches(record: dict, profile: dict) -> bool:
    hw = record.get("hardware") or {}
    model = record.get("model") or {}
    for key, want in profile.items():
        if key == "backend" and model.get("backend") != want:
            return False
        if key == "gpu" and bool(hw.get("gpu")) != bool(want):
            return False
        if key in ("cpu", "gpu_name"):
            have = hw.get("cpu") if key == "cpu" else (hw.get("gpu") or {}).get("name")
            if not have or str(want).lower() not in str(have).lower():
                return False
    return True


def _num(x):
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _median(d):
    return _num(d.get("median")) if isinstance(d, dict) else _num(d)


def cost_values(record: dict) -> dict[str, tuple[float | None, str | None]]:
    """Cost columns of one record: (value, where from). Bench protocol numbers win over the
    metered evaluation run for latency; missing stays None."""
    run = record.get("run") or {}
    bench = record.get("bench") or {}
    model = record.get("model") or {}
    gpu = bool((record.get("hardware") or {}).get("gpu")) or model.get("backend") == "vllm"

    def pick(*options):
        for value, source in options:
            if value is not None:
                return value, source
        return None, None

    return {
        "ttft_ms": pick((_median(bench.get("ttft_ms")), "bench"), (_num(run.get("ttft_ms")), "run")),
        "decode_ms_per_token": pick((_median(bench.get("tg_ms_per_token")), "bench"),
                                    (_num(run.get("decode_ms_per_token")), "run")),
        "prefill_tok_s": pick((_median(bench.get("pp_tok_s")), "bench"), (_num(run.get("prefill_tok_s")), "run")),
        "throughput_tok_s": pick((_num(run.get("throughput_tok_s")), "run")),
        "peak_memory_bytes": pick((_num(run.get("peak_gpu_bytes")) if gpu else _num(run.get("peak_rss_bytes")), "run"),
                                  (_num(bench.get("peak_rss_bytes")) if not gpu else None, "bench")),
        "energy_per_token_j": pick((_num(run.get("energy_per_token_j")), "run")),
        "wall_s": pick((_num(run.get("wall_s")), "run")),
        "model_bytes": pick((_num(model.get("file_bytes")), "model")),
    }


def _combine(records: list[dict]) -> tuple[dict[str, Any], list[str]]:
    """One model's cost over several runs: sums for time, max for memory, and a token- or
    request-weighted mean for rates; None where the weights are not recorded."""
    vals = [cost_values(r) for r in records]
    if len(vals) == 1:
        return {k: {"value": v, "source": s} for k, (v, s) in vals[0].items()}, []
    notes, out = [], {}
    weights = {
        "ttft_ms": "requests", "decode_ms_per_token": "generated_tokens", "prefill_tok_s": "prompt_tokens",
        "throughput_tok_s": "generated_tokens", "energy_per_token_j": "generated_tokens",
    }
    for key in vals[0]:
        have = [(v[key][0], rec) for v, rec in zip(vals, records) if v[key][0] is not None]
        sources = sorted({v[key][1] for v in vals if v[key][1]})
        if not have:
            out[key] = {"value": None, "source": None}
        elif key == "wall_s":
            out[key] = {"value": sum(x for x, _ in have) if len(have) == len(vals) else None, "source": "run (sum)"}
        elif key in ("peak_memory_bytes", "model_bytes"):
            out[key] = {"value": max(x for x, _ in have), "source": "max over runs"}
        else:
            w = [_num((rec.get("run") or {}).get(weights[key])) for _, rec in have]
            if all(x is not None and x > 0 for x in w):
                out[key] = {"value": float(np.average([x for x, _ in have], weights=w)),
                            "source": f"{'/'.join(sources)} (weighted by {weights[key]})"}
            else:
                out[key] = {"value": None, "source": None}
                notes.append(f"{key} not combinable over {len(records)} runs (no {weights[key]})")
    return out, notes


def _cost_and_pareto(rows, runs_by_model, spec, notes) -> None:
    machines = set()
    for row in rows:
        runs = runs_by_model[row["model"]]
        records = [r.cost for r in runs if r.cost and _hardware_matches(r.cost, spec.hardware)]
        other = [r for r in runs if r.cost and not _hardware_matches(r.cost, spec.hardware)]
        if other:
            notes.append(f"model '{row['model']}': cost from {', '.join(str(r.path) for r in other)} is from "
                         f"other hardware than the board's profile {spec.hardware}; not shown")
        if records:
            combined, why = _combine(records)
            notes += [f"model '{row['model']}': {w}" for w in why]
            for rec in records:
                hw = rec.get("hardware") or {}
                machines.add(str((hw.get("gpu") or {}).get("name") or hw.get("cpu")))
        else:
            combined = {k: {"value": None, "source": None} for k in COST_COLUMNS}
            # lm-eval's own timer is real but includes model loading; only used with no record
            walls = [r.eval_wall_s for r in runs]
            if all(w is not None for w in walls):
                combined["wall_s"] = {"value": sum(walls), "source": "lm-eval total_evaluation_time_seconds"}
        row["cost"] = {k: combined[k] for k in spec.cost_columns}
        overall = row["overall"]["value"]
        mem = combined["peak_memory_bytes"]["value"]
        row["efficiency"] = {
            "score_per_gb": (overall / (mem / 1e9)) if overall is not None and mem else None,
            "memory": "peak_memory_bytes",
        }
    if len(machines) > 1:
        notes.append(f"cost columns come from {len(machines)} different machines ({', '.join(sorted(machines))}); "
                     f"compare them with care")
    axes = {}
    for axis, options in PARETO_AXES.items():
        # the first measure that some model has: scoring-only runs (multiple choice) never
        # decode, so their latency is the prefill time per prompt token
        for key, label, convert in options:
            xs = {}
            for r in rows:
                raw = (r["cost"].get(key) or {}).get("value") if key in r["cost"] else None
                if raw is not None and (key != "prefill_tok_s" or raw > 0):
                    xs[r["model"]] = convert(raw)
            if xs:
                break
        axes[axis] = {"key": key if xs else None, "label": label if xs else None, "values": xs}
        pts = [(xs[r["model"]], r["overall"]["value"], r) for r in rows
               if r["model"] in xs and r["overall"]["value"] is not None]
        for r in rows:
            r.setdefault("pareto", {})[axis] = None
        for x, y, r in pts:
            # on the frontier: no other model is at least as good on both axes and better on one
            dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for x2, y2, _ in pts)
            r["pareto"][axis] = not dominated
    return axes
