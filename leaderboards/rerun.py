"""Re-runs: the same model and task in more than one results file.

Repeating ``slm-suite run`` into the same output folder is how a run is resumed or refreshed,
so a folder may hold several runs of one model. For each (model, task) the newest run wins;
the older ones lose that task, and a run left with no task is left out. Every superseded file
is named in a board note (as ``<model folder>/<file>``: a published board carries no local
paths). ``strict`` refuses re-runs instead (one line naming the files).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections import defaultdict
from pathlib import Path

from slm_tasks.leaderboards.ingest import Run
from slm_tasks.results.errors import BoardError


def short(path: Path) -> str:
    """``<model folder>/<file>``: names a run without the machine's absolute path."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def run_time(run: Run) -> tuple[float, str, str]:
    """When a run was made, for ordering: lm-eval's ``date`` (epoch seconds, set when the run
    started), else the time stamp in the file name, else the file's modification time; then
    the stamp and the path break ties, so the order never depends on the input order."""
    stamp = run.path.stem.removeprefix("results_")
    date = run.results.get("date")
    if isinstance(date, (int, float)) and not isinstance(date, bool):
        return float(date), stamp, str(run.path)
    try:  # lm-eval's stamp: datetime.now().isoformat() with ':' written as '-'
        day, _, clock = stamp.partition("T")
        made = _dt.datetime.fromisoformat(f"{day}T{clock.replace('-', ':')}")
        return made.timestamp(), stamp, str(run.path)
    except ValueError:
        pass
    try:
        return run.path.stat().st_mtime, stamp, str(run.path)
    except OSError:
        return 0.0, stamp, str(run.path)


def newest_runs(runs: list[Run], strict: bool = False) -> tuple[list[Run], list[str]]:
    """Keep the newest run of every (model, task); return (runs, notes).

    A run that lost some tasks is kept with the rest; one that lost all is dropped.
    ``strict``: raise BoardError naming every re-run instead.
    """
    by_key: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        for task in run.tasks:
            by_key[(run.model, task)].append(run)
    winner = {key: max(rs, key=run_time) for key, rs in by_key.items() if len(rs) > 1}
    if not winner:
        return runs, []
    if strict:
        files: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)  # (model, files) -> tasks
        for model, task in sorted(winner):
            paths = tuple(str(r.path) for r in sorted(by_key[(model, task)], key=run_time))
            files[(model, paths)].append(task)
        problems = [
            f"model '{model}', task{'s' * (len(tasks) > 1)} {', '.join(tasks)}: {len(paths)} runs ({', '.join(paths)})"
            for (model, paths), tasks in files.items()
        ]
        raise BoardError(
            f"re-runs with --strict: {'; '.join(problems)}; pass one run per model and task, "
            f"or leave out --strict to show the newest run of each",
            problems,
        )
    lost: dict[int, list[str]] = defaultdict(list)  # id(run) -> its superseded tasks
    newer: dict[int, set[str]] = defaultdict(set)  # id(run) -> the runs that replace it
    for (model, task), best in winner.items():
        for run in by_key[(model, task)]:
            if run is not best:
                lost[id(run)].append(task)
                newer[id(run)].add(short(best.path))
    kept, notes = [], []
    for run in runs:
        tasks = lost.get(id(run))
        if not tasks:
            kept.append(run)
            continue
        remaining = {t: tr for t, tr in run.tasks.items() if t not in tasks}
        if remaining:
            kept.append(dataclasses.replace(run, tasks=remaining))
            what = f"task{'s' * (len(tasks) > 1)} {', '.join(sorted(tasks))} superseded"
        else:
            what = "superseded"
        by = ", ".join(sorted(newer[id(run)]))
        notes.append(
            f"{short(run.path)}: {what} by the newer run {by} of model "
            f"'{run.model}' (the newest run of a model and task is shown; --strict refuses re-runs)"
        )
    return kept, notes
