"""The release gate: may a candidate run replace the baseline?

Accuracy, per task, on the documents both runs scored: FAIL when a drop beyond the task's
margin is shown (exact McNemar for 0/1 outcomes, paired bootstrap otherwise; Holm-corrected
across tasks); PASS when non-inferiority is shown (the interval's lower end above -margin:
Tango's score interval for 0/1 outcomes, the paired bootstrap's otherwise); else NOT SHOWN.
A --limit smoke comparison can fail, never pass. Cost: budgets judged against the runs'
spread (slm_tasks.leaderboards.gate_checks).
Verdict and exit code: 0 passed, 1 failed, 2 invalid input (GateError), 3 not shown.
"""

from __future__ import annotations

from pathlib import Path, PurePath, PureWindowsPath

import numpy as np

import slm_tasks.leaderboards.gate_stats as gate_stats
import slm_tasks.leaderboards.validate as validate
from slm_tasks.leaderboards.gate_checks import FAIL, NOT_SHOWN, PASS, Check, budget_checks
from slm_tasks.leaderboards.gate_policy import POLICY_SCHEMA, Policy, load_policy
from slm_tasks.leaderboards.gate_report import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_NOT_SHOWN,
    EXIT_PASSED,
    RESULT_SCHEMA,
    GateResult,
    describe_files,
)
from slm_tasks.leaderboards.ingest import Run, load_runs
from slm_tasks.leaderboards.spec import load_spec
from slm_tasks.results import stats
from slm_tasks.results.errors import BoardError, GateError

__all__ = [
    "run_gate",
    "load_policy",
    "Policy",
    "Check",
    "GateResult",
    "POLICY_SCHEMA",
    "RESULT_SCHEMA",
    "EXIT_PASSED",
    "EXIT_FAILED",
    "EXIT_INVALID",
    "EXIT_NOT_SHOWN",
]

# Below this many documents a percentile bootstrap of a mean difference undercovers (and a
# handful of identical values gives a zero-width interval): non-inferiority is not shown.
MIN_BOOTSTRAP_DOCS = 30


def _side(label: str, inputs) -> tuple[str, dict[str, Run]]:
    """One model's runs -> (model, {task: run}); several models or a repeated task is invalid."""
    items = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    try:
        runs = load_runs(items)
    except BoardError as exc:
        raise GateError(f"{label}: {exc}") from None
    models = sorted({r.model for r in runs})
    if len(models) > 1:
        raise GateError(
            f"{label}: {', '.join(map(str, items))} holds runs of {len(models)} models "
            f"({', '.join(models)}); point at one model's results"
        )
    tasks: dict[str, Run] = {}
    for r in runs:
        for t in r.tasks:
            if t in tasks:
                raise GateError(f"{label}: task {t} is in two files ({tasks[t].path}, {r.path}); keep one")
            tasks[t] = r
    return models[0], tasks


def run_gate(
    baseline, candidate, policy=None, out: str | Path | None = None, allow_limit: bool | None = None
) -> GateResult:
    """Gate ``candidate`` against ``baseline``; ``allow_limit`` overrides the policy's."""
    pol = load_policy(policy)
    allow = pol.allow_limit if allow_limit is None else allow_limit
    try:
        spec = load_spec(pol.spec)
    except BoardError as exc:
        raise GateError(f"{pol.source}: {exc}") from None
    base_model, base = _side("baseline", baseline)
    cand_model, cand = _side("candidate", candidate)
    notes: list[str] = []

    problems = []
    limited = [
        (label, r)
        for label, runs in (("baseline", base), ("candidate", cand))
        for r in {id(r): r for r in runs.values()}.values()
        if r.limit is not None
    ]
    if not allow:
        problems += [
            f"{label} {r.path.name}: made with --limit {r.limit:g}; compare complete runs, or "
            f"pass --allow-limit for a smoke comparison (it can fail, never pass)"
            for label, r in limited
        ]
    shared = sorted(set(base) & set(cand))
    # "all" is every task of the overall score (the capability domains); ICL variants are
    # compared when the policy names them (their 0-shot rows repeat the base tasks)
    resolved = {name: (d.name, entry) for d, entry, name in spec.resolve(set(shared))}
    icl = {name: (None, spec.icl) for name in spec.icl_tasks(set(shared))}
    wanted = pol.tasks if pol.tasks is not None else [t for t in shared if t in resolved or t in pol.metrics]
    for t in wanted:
        if t not in shared:
            has = {side: "yes" if t in runs else "no" for side, runs in (("baseline", base), ("candidate", cand))}
            problems.append(
                f"task {t} (named in the policy) is not in both runs "
                f"(baseline: {has['baseline']}, candidate: {has['candidate']})"
            )
    wanted = [t for t in wanted if t in shared]
    if not wanted and not problems:
        problems.append(
            f"no task to compare: baseline has {sorted(base) or 'none'}, candidate has "
            f"{sorted(cand) or 'none'}; the policy's spec is '{pol.spec}'"
        )
    for t in wanted:
        p, _ = validate.check_consistency(t, [(base_model, base[t]), (cand_model, cand[t])])
        problems += p
    if problems:
        raise GateError.many(problems, "cannot gate")
    smoke = bool(limited)

    rng = np.random.default_rng(pol.seed)
    checks: list[Check] = []
    for t in wanted:
        domain, entry = resolved.get(t) or icl.get(t) or (None, None)
        metric = pol.metrics.get(t) or _metric(t, entry, base[t], cand[t])
        checks.append(_accuracy_check(t, domain, metric, base[t].tasks[t], cand[t].tasks[t], pol, rng, notes))
    for c, ph in zip(checks, stats.holm([c.p_value for c in checks])):
        c.p_holm = ph
        _judge_accuracy(c, pol, smoke)
    if pol.budgets:
        checks += budget_checks(
            pol.budgets,
            pol.on_missing_cost,
            pol.alpha,
            _one_record("baseline", base, notes),
            _one_record("candidate", cand, notes),
        )

    result = GateResult(
        checks=checks,
        baseline=_describe(base_model, base),
        candidate=_describe(cand_model, cand),
        policy=pol.describe() | {"allow_limit": allow},
        notes=notes,
        smoke=smoke,
    )
    if out is not None:
        from slm_tasks.leaderboards.outputs import write_folder

        write_folder(
            Path(out),
            {"gate.md": result.to_markdown(), "gate.json": result.to_json(), "gate.junit.xml": result.to_junit()},
        )
    return result


def _judge_accuracy(c: Check, pol: Policy, smoke: bool) -> None:
    """Fail on a shown regression; pass on shown non-inferiority; otherwise not shown."""
    lvl = f"{100 * pol.level:g}%"
    if c.p_holm < pol.alpha:
        c.status, verdict = FAIL, "regressed beyond the margin"
    elif smoke:
        c.status, c.reason = NOT_SHOWN, "smoke comparison"
        verdict = "not shown: smoke comparison (--limit runs), a pass cannot be shown"
    elif c.non_inferiority_shown:
        c.status, verdict = PASS, "non-inferiority shown"
    else:
        c.status = NOT_SHOWN
        c.reason = (
            f"{c.n} documents are too few for the bootstrap (needs {MIN_BOOTSTRAP_DOCS})"
            if c.method == "paired bootstrap" and c.n < MIN_BOOTSTRAP_DOCS
            else f"interval reaches below −margin with {c.n} documents"
        )
        verdict = f"not shown: neither a regression beyond the margin nor non-inferiority ({c.reason})"
    c.message = (
        f"{c.name}: {verdict}: difference {_pts(c.observed)} points ({lvl} CI [{_pts(c.low)}, "
        f"{_pts(c.high)}]), margin {100 * c.margin:.1f} points, {c.n} documents; {c.method} "
        f"p={_p(c.p_value)}, Holm p={_p(c.p_holm)} vs alpha {pol.alpha}"
    )


def _pts(x) -> str:
    return "—" if x is None else f"{100 * x:+.1f}"


def _p(x) -> str:
    return "—" if x is None else (f"{x:.2g}" if x < 0.001 else f"{x:.3f}")


def _metric(task, entry, brun: Run, crun: Run) -> str:
    options = entry.metrics if entry else ["acc,none"]
    for m in options:
        if brun.tasks[task].value(m) is not None and crun.tasks[task].value(m) is not None:
            return m
    raise GateError(
        f"task {task}: neither run reports any of {options}; name the metric under 'metrics:' in the policy"
    )


def _describe(model: str, runs: dict[str, Run]) -> dict:
    # a model named by its file on this machine is shown by the file's name (reports are published)
    label = (
        PureWindowsPath(model).name
        if PureWindowsPath(model).drive
        else PurePath(model).name
        if model.startswith(("/", "~"))
        else model
    )
    return {"model": label, "files": describe_files(r.path for r in runs.values()), "tasks": sorted(runs)}


def _accuracy_check(task, domain, metric, b, c, pol: Policy, rng, notes) -> Check:
    name, _, flt = metric.partition(",")
    sb, sc = b.samples(flt), c.samples(flt)
    for label, tr, s in (("baseline", b, sb), ("candidate", c, sc)):
        if s is None or s.numeric(name) is None:
            if tr.samples_problem:  # a samples file is there but cannot be read
                raise GateError(
                    f"task {task}: the {label}'s samples file cannot be read ({tr.samples_problem}); "
                    f"put the samples_*.jsonl lm-eval wrote in its place, the gate pairs documents"
                )
            where = tr.samples_path.name if tr.samples_path else "no samples file"
            raise GateError(
                f"task {task}: the {label} has no per-document {metric} values ({where}); "
                f"rerun with --log_samples, the gate pairs documents"
            )
    problems = validate.check_shared_docs(task, b, c, flt)
    if problems:
        raise GateError.many(problems, "cannot gate")
    vb = dict(zip(sb.doc_ids, sb.numeric(name)))
    vc = dict(zip(sc.doc_ids, sc.numeric(name)))
    docs = sorted(set(vb) & set(vc))
    if not docs:
        raise GateError(f"task {task}: baseline and candidate share no documents")
    if len(docs) < max(len(vb), len(vc)):
        notes.append(
            f"task {task}: compared on the {len(docs)} shared documents (baseline {len(vb)}, candidate {len(vc)})"
        )
    xb = np.array([vb[d] for d in docs])
    xc = np.array([vc[d] for d in docs])
    if not b.higher_is_better.get(name, True):  # lower is better: compare the negated metric
        xb, xc = -xb, -xc
    margin = pol.margin(task, domain)
    if stats.is_binary(xb) and stats.is_binary(xc):
        r = stats.mcnemar_regression(xb, xc, margin, pol.level)
        # the Wald interval collapses to a point with no discordant pairs: Tango's does not
        low, high = gate_stats.tango_interval(r.base_only, r.cand_only, r.n, pol.level)
        method, shown = "exact McNemar", low > -margin
    else:
        r = stats.paired_bootstrap_regression(xb, xc, margin, pol.level, pol.bootstrap_iters, rng)
        low, high = r.low, r.high
        method, shown = "paired bootstrap", r.n >= MIN_BOOTSTRAP_DOCS and low > -margin
    se_b, se_c = b.stderr(metric), c.stderr(metric)
    p_unpaired = None
    if se_b is not None and se_c is not None:
        p_unpaired = stats.unpaired_regression(b.value(metric), se_b, c.value(metric), se_c, margin)
    return Check(
        name=f"{task} {metric}",
        kind="accuracy",
        status=NOT_SHOWN,
        message="",
        observed=r.diff,
        low=low,
        high=high,
        margin=margin,
        baseline=float(xb.mean()),
        candidate=float(xc.mean()),
        p_value=r.p_value,
        p_unpaired=p_unpaired,
        method=method,
        n=r.n,
        discordant=None if r.base_only is None else {"baseline_only": r.base_only, "candidate_only": r.cand_only},
        non_inferiority_shown=bool(shown),
    )


def _one_record(label, runs: dict[str, Run], notes) -> dict | None:
    records = {id(r): r for r in runs.values() if r.cost}
    if not records:
        return None
    if len(records) > 1:
        notes.append(
            f"{label}: {len(records)} cost records; budgets use the first ({next(iter(records.values())).path.name})"
        )
    return next(iter(records.values())).cost
