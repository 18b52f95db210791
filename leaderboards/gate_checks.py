"""The release gate's checks: their outcome, and the cost budgets judged against the noise.

A check's status is one of PASS ("shown within the bound"), FAIL ("shown beyond it") or
NOT_SHOWN (the data cannot tell: too few documents or runs, a spread too wide, a smoke run);
SKIPPED only where the policy says so (``budgets.missing: skip``) and it counts for nothing.

Budgets: a figure with a run-to-run spread (the bench keeps every run's value) is judged by
one-sided, distribution-free bounds at confidence 1 - alpha: relative budgets by Moses'
bounds on the shift of log(candidate) - log(baseline) (the typical ratio of a candidate run to
a baseline run), absolute budgets by the order-statistic bounds of the candidate's median. A
figure without spread (the evaluation run's meter, memory, file size) is compared as it is,
and the check says its verdict rests on one figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import slm_tasks.leaderboards.gate_stats as gate_stats
from slm_tasks.leaderboards.cost_columns import cost_values
from slm_tasks.leaderboards.spec import COST_COLUMNS
from slm_tasks.results.cost_record import CostRecord

PASS, FAIL, NOT_SHOWN, SKIPPED = "pass", "fail", "not shown", "skipped"
# cost column -> the bench entry whose every run is recorded (adapters/bench.py stats())
BENCH_SERIES = {"decode_ms_per_token": "tg_ms_per_token", "prefill_tok_s": "pp_tok_s", "ttft_ms": "ttft_ms"}


@dataclass
class Check:
    name: str
    kind: str  # "accuracy" | "budget"
    status: str
    message: str
    observed: float | None = None  # accuracy: candidate - baseline; budget: candidate's value
    low: float | None = None  # accuracy: the difference's interval; budget: see ``bounds_of``
    high: float | None = None
    margin: float | None = None
    limit: float | None = None
    baseline: float | None = None
    candidate: float | None = None
    p_value: float | None = None
    p_holm: float | None = None
    p_unpaired: float | None = None
    method: str | None = None
    n: int | None = None
    discordant: dict[str, int] | None = None
    non_inferiority_shown: bool | None = None
    basis: str | None = None  # budgets: "runs" (judged against the spread) | "one figure"
    runs: dict[str, int] | None = None  # budgets: runs per side behind the figures
    bounds_of: str | None = None  # budgets: what low/high bound ("ratio" | "median")
    reason: str | None = None  # why not shown

    @property
    def passed(self) -> bool:
        return self.status == PASS


def unit(key: str, x: float | None) -> str:
    """A cost value in the board's display unit (bytes as GB)."""
    if x is None or not math.isfinite(x):
        return "—"
    u = COST_COLUMNS[key][1]
    return f"{x / 1e9:.4g} {u}" if key.endswith("_bytes") else f"{x:.4g} {u}"


def _series(record: CostRecord | None, key: str) -> tuple[float | None, list[float] | None]:
    """(figure, every run's value or None): the figure is the board's (the bench median)."""
    if record is None:
        return None, None
    value, source = cost_values(record)[key]
    if value is None or source != "bench" or key not in BENCH_SERIES:
        return value, None
    return value, record.bench_values(BENCH_SERIES[key])


def budget_checks(
    budgets: dict, on_missing: str, alpha: float, brec: CostRecord | None, crec: CostRecord | None
) -> list[Check]:
    """One check per budget rule; ``brec``/``crec`` the baseline's and candidate's cost records."""
    checks = []
    for key, rule in budgets.items():
        base, cand = _series(brec, key), _series(crec, key)
        for kind, value in rule.items():
            checks.append(_budget_check(key, kind, float(value), base, cand, on_missing, 1 - alpha))
    return checks


def _budget_check(key, kind, value, base, cand, on_missing, conf) -> Check:
    title, _, lower = COST_COLUMNS[key]
    (bv, bruns), (cv, cruns) = base, cand
    name = f"{key} {kind}"
    relative = kind in ("max_increase", "max_decrease")
    ratio = (1 + value if kind == "max_increase" else 1 - value) if relative else None
    bound = (None if bv is None else bv * ratio) if relative else value
    common = dict(limit=bound, baseline=bv, candidate=cv, observed=cv)
    if cv is None or (relative and bv is None):
        missing = "candidate" if cv is None else "baseline"
        status = SKIPPED if on_missing == "skip" else FAIL
        effect = "skipped" if status == SKIPPED else "fails"
        return Check(
            name,
            "budget",
            status,
            f"{name}: the {missing} has no measured {key} ({effect}: budgets.missing is {on_missing})",
            reason=f"the {missing} has no measured {key}",
            **common,
        )
    if relative and bv <= 0:
        return Check(
            name,
            "budget",
            NOT_SHOWN,
            f"{name}: the baseline's {key} is {bv:g}; a relative budget needs a positive figure",
            reason="baseline figure not positive",
            **common,
        )
    sign = "+" if kind == "max_increase" else "−"
    what = f"{sign}{100 * value:g}% of the baseline" if relative else kind
    head = f"{name}: candidate {title} {unit(key, cv)}"
    if relative:
        head += f", baseline {unit(key, bv)} ({cv / bv - 1:+.1%})"
    head += f"; budget {what} = {unit(key, bound)}"
    if cruns is None or (relative and bruns is None):
        ok = cv <= bound if lower else cv >= bound
        sides = "per side" if relative else "of the candidate"
        return Check(
            name,
            "budget",
            PASS if ok else FAIL,
            f"{head}; {'within' if ok else 'beyond'} the budget, based on one figure {sides} "
            f"(no run-to-run spread recorded)",
            basis="one figure",
            **common,
        )
    if relative:  # the typical ratio of a candidate run to a baseline run, on the log scale
        _, lo, hi = gate_stats.shift_bounds(np.log(cruns), np.log(bruns), conf)
        # no bound stays infinite (exp would make the missing lower bound a ratio of 0)
        lo, hi = (math.exp(x) if math.isfinite(x) else x for x in (lo, hi))
        target, of = ratio, "ratio"
        evidence, method = "candidate/baseline run ratio", "Moses/Hodges-Lehmann on log values"
        fmt, n_runs = (lambda x: f"{x:.3f}"), f"{len(cruns)} candidate vs {len(bruns)} baseline runs"
    else:
        _, lo, hi = gate_stats.median_bounds(cruns, conf)
        target, of, evidence, method = value, "median", "candidate's median", "order statistics (sign test)"
        fmt, n_runs = (lambda x: unit(key, x)), f"{len(cruns)} candidate runs"
    # lower is better: beyond the budget = above it; higher is better: below it
    beyond, within = (lo > target, hi <= target) if lower else (hi < target, lo >= target)
    status = FAIL if beyond else PASS if within else NOT_SHOWN
    verdict = {
        FAIL: "beyond the budget beyond the run-to-run spread",
        PASS: "within the budget beyond the run-to-run spread",
        NOT_SHOWN: "not shown: the runs' spread is too wide to tell",
    }[status]
    reason = None
    if status == NOT_SHOWN:
        reason = (
            "too few runs to bound the spread"
            if not (math.isfinite(lo) and math.isfinite(hi))
            else "the spread straddles the budget"
        )
    interval = (
        f"{evidence} one-sided {100 * conf:g}% bounds [{fmt(lo)}, {fmt(hi)}] from {n_runs}"
        if math.isfinite(lo) and math.isfinite(hi)
        else f"{n_runs} are too few for one-sided {100 * conf:g}% bounds on the {evidence}"
    )
    return Check(
        name,
        "budget",
        status,
        f"{head}; {verdict} ({interval})",
        low=lo if math.isfinite(lo) else None,
        high=hi if math.isfinite(hi) else None,
        basis="runs",
        runs={"baseline": len(bruns) if relative else None, "candidate": len(cruns)},
        bounds_of=of,
        method=method,
        reason=reason,
        **common,
    )
