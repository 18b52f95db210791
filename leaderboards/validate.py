"""Checks before runs are joined into one board (or compared by the gate).

Every finding names the file(s) and says why; the caller raises them together.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from slm_tasks.leaderboards.ingest import Run, TaskRun

LIMIT_FIX = (
    "rerun without --limit (the *_lite tasks are the declared quick subsets), or allow it for a "
    "smoke board with `allow_limit: true` in the spec / --allow-limit"
)


def _short(p: Path) -> str:
    return f"{p.parent.name}/{p.name}"


def check_limits(runs: list[Run], allow_limit: bool) -> list[str]:
    if allow_limit:
        return []
    return [
        f"{r.path}: made with --limit {r.limit:g} (config.limit is not null); {LIMIT_FIX}"
        for r in runs
        if r.limit is not None
    ]


def check_duplicates(entries: list[tuple[str, str, Run]]) -> list[str]:
    """entries: (model, task, run). The same model must not bring the same task twice."""
    seen: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for model, task, run in entries:
        seen[(model, task)].append(run)
    return [
        f"model '{model}', task {task}: present in {len(rs)} files ({', '.join(str(r.path) for r in rs)}); "
        f"keep one run per model and task"
        for (model, task), rs in seen.items()
        if len(rs) > 1
    ]


def check_consistency(task: str, entries: list[tuple[str, Run]]) -> tuple[list[str], list[str]]:
    """Same task across models: versions, data, shots and prompts must agree.

    Returns (problems, notes).
    """
    problems, notes = [], []
    trs = [(model, run, run.tasks[task]) for model, run in entries]
    if len(trs) < 2:
        return problems, notes
    facets = [
        ("task versions", lambda m, r, t: t.version),
        ("data (dataset_kwargs / dataset_path)", lambda m, r, t: t.dataset),
        ("n-shot", lambda m, r, t: t.n_shot),
        ("--limit values", lambda m, r, t: r.limit),
    ]
    for what, key in facets:
        groups = _group(trs, key)
        if len(groups) > 1:
            problems.append(
                f"task {task}: {what} differ between models: {_describe(groups)}; "
                f"compare runs made with the same task definitions"
            )
    # long-context prompts are cut in each model's own tokens: their hashes differ by design
    # (the version and metadata above pin the haystack, needles and cells)
    if (trs[0][2].config.get("metadata") or {}).get("prompts_per_model"):
        return problems, notes
    hashed = [x for x in trs if x[2].task_hash]
    hashes = _group(hashed, lambda m, r, t: t.task_hash)
    if len(hashes) > 1:
        detail = _diagnose_prompts(hashed)
        problems.append(
            f"task {task}: prompts/documents differ between models (task_hashes: "
            f"{_describe(hashes, short_values=True)}){detail}; rebuild from runs of the same task version"
        )
    unhashed = [x for x in trs if not x[2].task_hash]
    if unhashed:
        notes.append(
            f"task {task}: prompts not verified for {', '.join(_short(r.path) for _, r, _ in unhashed)} "
            f"(no task_hashes: run without --log_samples)"
        )
    return problems, notes


def _group(trs, key) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = defaultdict(list)
    for m, r, t in trs:
        groups[json.dumps(key(m, r, t), sort_keys=True, default=str)].append(r)
    return groups


def _describe(groups: dict[str, list[Run]], short_values: bool = False) -> str:
    parts = []
    for value, runs in groups.items():
        shown = value.strip('"')[:12] + "…" if short_values else value
        parts.append(f"{shown} in {', '.join(_short(r.path) for r in runs)}")
    return "; ".join(parts)


def _diagnose_prompts(trs: list[tuple[str, Run, TaskRun]]) -> str:
    """Say what differs (documents, prompts or targets) when samples are at hand."""
    with_samples = [(m, r, t, t.samples()) for m, r, t in trs]
    with_samples = [x for x in with_samples if x[3] is not None]
    if len(with_samples) < 2:
        return ""
    (_, ra, _, a), (_, rb, _, b) = (
        with_samples[0],
        next((x for x in with_samples[1:] if x[2].task_hash != with_samples[0][2].task_hash), with_samples[1]),
    )
    if set(a.doc_ids) != set(b.doc_ids):
        return f" — {_short(ra.path)} has {len(a.doc_ids)} docs, {_short(rb.path)} has {len(b.doc_ids)}"
    for label, field in (("documents", "doc_hash"), ("prompts", "prompt_hash"), ("targets", "target_hash")):
        ha, hb = getattr(a, field), getattr(b, field)
        diff = [d for d in a.doc_ids if ha.get(d) != hb.get(d)]
        if diff:
            return f" — {label} differ on {len(diff)} docs (first: doc {diff[0]})"
    return ""


def check_shared_docs(task: str, base: TaskRun, cand: TaskRun, flt: str) -> list[str]:
    """For paired tests: the shared docs must be the same documents with the same prompts."""
    a, b = base.samples(flt), cand.samples(flt)
    problems = []
    for label, field in (("documents", "doc_hash"), ("prompts", "prompt_hash"), ("targets", "target_hash")):
        ha, hb = getattr(a, field), getattr(b, field)
        diff = [d for d in ha if d in hb and ha[d] != hb[d]]
        if diff:
            problems.append(
                f"task {task}: {label} differ between baseline and candidate on {len(diff)} "
                f"shared docs (first: doc {diff[0]}); compare runs of the same task version"
            )
            break
    return problems
