"""The release gate: may a candidate run replace the baseline?

Accuracy: per task, a paired test on the documents both runs scored (exact McNemar for 0/1
outcomes, paired bootstrap otherwise), Holm-corrected across tasks. A task fails when the
candidate is shown to be worse than the baseline by more than the task's margin.
Cost: budgets on the candidate's cost record (absolute, or relative to the baseline).
Exit codes: 0 pass, 1 fail, 2 invalid input (GateError).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import slm_tasks.leaderboards.validate as validate
from slm_tasks import __version__
from slm_tasks.leaderboards.cost_columns import cost_values
from slm_tasks.leaderboards.ingest import Run, load_runs
from slm_tasks.leaderboards.spec import COST_COLUMNS, load_spec
from slm_tasks.results import stats
from slm_tasks.results.errors import BoardError, GateError

POLICY_SCHEMA = "slm-suite.gate-policy/1"
RESULT_SCHEMA = "slm-suite.gate-result/1"


@dataclass
class Policy:
    spec: str = "default"
    alpha: float = 0.05
    level: float = 0.95
    bootstrap_iters: int = 5000
    seed: int = 1234
    tasks: list[str] | None = None  # None: every task of the spec's domains both runs have
    metrics: dict[str, str] = field(default_factory=dict)
    margin_default: float = 0.0
    margin_domains: dict[str, float] = field(default_factory=dict)
    margin_tasks: dict[str, float] = field(default_factory=dict)
    budgets: dict[str, dict[str, float]] = field(default_factory=dict)
    on_missing_cost: str = "fail"
    allow_limit: bool = False
    source: str = ""

    def margin(self, task: str, domain: str | None) -> float:
        if task in self.margin_tasks:
            return float(self.margin_tasks[task])
        if domain in self.margin_domains:
            return float(self.margin_domains[domain])
        return float(self.margin_default)


@dataclass
class Check:
    name: str
    kind: str  # "accuracy" | "budget"
    passed: bool
    message: str
    observed: float | None = None  # accuracy: candidate - baseline; budget: candidate's value
    low: float | None = None
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


@dataclass
class GateResult:
    passed: bool
    checks: list[Check]
    baseline: dict[str, Any]
    candidate: dict[str, Any]
    policy: dict[str, Any]
    notes: list[str]

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> str:
        doc = {"schema": RESULT_SCHEMA, "generator": f"slm-suite {__version__}",
               "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "passed": self.passed, "exit_code": self.exit_code, "baseline": self.baseline,
               "candidate": self.candidate, "policy": self.policy,
               "checks": [asdict(c) for c in self.checks], "notes": self.notes}
        return json.dumps(doc, indent=2, default=str) + "\n"

    def to_markdown(self) -> str:
        head = "✅ **Gate passed**" if self.passed else f"❌ **Gate failed** ({len(self.failures)} of {len(self.checks)} checks)"
        lvl = f"{100 * self.policy['level']:.0f}%"
        out = [f"### Release gate: `{self.candidate['model']}` vs baseline `{self.baseline['model']}`", "", head, "",
               f"Accuracy: paired tests on shared documents, Holm-corrected at α = {self.policy['alpha']}; "
               f"a task fails when the candidate is significantly worse than the baseline by more than its margin. "
               f"Differences in points (candidate − baseline), {lvl} intervals.", ""]
        acc = [c for c in self.checks if c.kind == "accuracy"]
        if acc:
            out += ["| | task | n | baseline | candidate | difference | interval | margin | test | p | p (Holm) |",
                    "|---|:---|---:|---:|---:|---:|:---|---:|:---|---:|---:|"]
            for c in acc:
                out.append(f"| {'✅' if c.passed else '❌'} | {c.name} | {c.n} | {_pts(c.baseline)} | {_pts(c.candidate)} | "
                           f"{_pts(c.observed, True)} | [{_pts(c.low, True)}, {_pts(c.high, True)}] | {_pts(c.margin)} | "
                           f"{c.method} | {_p(c.p_value)} | {_p(c.p_holm)} |")
        bud = [c for c in self.checks if c.kind == "budget"]
        if bud:
            out += ["", "| | budget | baseline | candidate | limit |", "|---|:---|---:|---:|---:|"]
            for c in bud:
                key = c.name.split()[0]
                out.append(f"| {'✅' if c.passed else '❌'} | {c.name} | {_unit(key, c.baseline)} | "
                           f"{_unit(key, c.candidate)} | {_unit(key, c.limit)} |")
        if self.failures:
            out += ["", "**Failing checks**", ""] + [f"- {c.message}" for c in self.failures]
        if self.notes:
            out += ["", "Notes:", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def to_junit(self) -> str:
        suite = ET.Element("testsuite", name="slm-suite gate", tests=str(len(self.checks)),
                           failures=str(len(self.failures)), errors="0", skipped="0")
        for c in self.checks:
            case = ET.SubElement(suite, "testcase", classname=f"slm_suite.gate.{c.kind}", name=c.name)
            if not c.passed:
                fail = ET.SubElement(case, "failure", message=c.message, type=f"{c.kind}-regression")
                fail.text = json.dumps(asdict(c), indent=2, default=str)
            else:
                ET.SubElement(case, "system-out").text = c.message
        root = ET.Element("testsuites", name="slm-suite gate", tests=str(len(self.checks)),
                          failures=str(len(self.failures)))
        root.append(suite)
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _pts(x, signed=False):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def _p(x):
    return "—" if x is None else (f"{x:.2g}" if x < 0.001 else f"{x:.3f}")


def _unit(key: str, x: float | None) -> str:
    """A cost value in the board's display unit (bytes as GB)."""
    if x is None:
        return "—"
    unit = COST_COLUMNS[key][1]
    return f"{x / 1e9:.4g} {unit}" if key.endswith("_bytes") else f"{x:.4g} {unit}"


# ---- policy --------------------------------------------------------------------------------

def load_policy(policy: str | Path | dict | None) -> Policy:
    if isinstance(policy, Policy):
        return policy
    if policy is None or isinstance(policy, dict):
        data, source = dict(policy or {}), "<dict>" if policy else "<defaults>"
    else:
        path = Path(policy)
        if path.is_file():
            text, source = path.read_text(encoding="utf-8"), str(path)
        elif not path.suffix and (resources.files("slm_tasks.leaderboards") / f"{path.name}.yaml").is_file():
            text = (resources.files("slm_tasks.leaderboards") / f"{path.name}.yaml").read_text(encoding="utf-8")
            source = f"{path.name} (packaged)"
        else:
            raise GateError(f"gate policy '{policy}' not found; pass a YAML file (example: leaderboards/gate.yaml)")
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise GateError(f"{source}: gate policy is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise GateError(f"{source}: a gate policy is a YAML mapping")
    if data.get("schema", POLICY_SCHEMA) != POLICY_SCHEMA:
        raise GateError(f"{source}: schema is {data.get('schema')!r}, expected '{POLICY_SCHEMA}'")
    known = {"schema", "spec", "alpha", "level", "bootstrap_iters", "seed", "tasks", "metrics", "margins",
             "budgets", "allow_limit"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise GateError(f"{source}: unknown policy key(s) {unknown}; known: {sorted(known)}")
    margins = data.get("margins") or {}
    if not isinstance(margins, dict):
        margins = {"default": margins}
    budgets = dict(data.get("budgets") or {})
    on_missing = budgets.pop("missing", "fail")
    if on_missing not in ("fail", "skip"):
        raise GateError(f"{source}: budgets.missing must be 'fail' or 'skip'")
    for key, rule in budgets.items():
        if key not in COST_COLUMNS:
            raise GateError(f"{source}: unknown budget '{key}'; known: {', '.join(COST_COLUMNS)}")
        lower = COST_COLUMNS[key][2]
        allowed = {"max", "max_increase"} if lower else {"min", "max_decrease"}
        if not isinstance(rule, dict) or not rule or set(rule) - allowed:
            raise GateError(f"{source}: budget {key} takes {sorted(allowed)} (fraction for the relative one)")
    p = Policy(
        spec=str(data.get("spec", "default")), alpha=float(data.get("alpha", 0.05)),
        level=float(data.get("level", 0.95)), bootstrap_iters=int(data.get("bootstrap_iters", 5000)),
        seed=int(data.get("seed", 1234)),
        tasks=None if data.get("tasks") in (None, "all") else list(data["tasks"]),
        metrics=dict(data.get("metrics") or {}),
        margin_default=float(margins.get("default", 0.0)),
        margin_domains=dict(margins.get("domains") or {}), margin_tasks=dict(margins.get("tasks") or {}),
        budgets=budgets, on_missing_cost=on_missing, allow_limit=bool(data.get("allow_limit", False)),
        source=source,
    )
    if not 0 < p.alpha < 1 or not 0.5 < p.level < 1:
        raise GateError(f"{source}: alpha must be in (0, 1) and level in (0.5, 1)")
    if any(m < 0 for m in [p.margin_default, *p.margin_domains.values(), *p.margin_tasks.values()]):
        raise GateError(f"{source}: margins are non-negative accuracy fractions (0.02 = 2 points)")
    return p


# ---- runs ------------------------------------------------------------------------------------

def _side(label: str, inputs) -> tuple[str, dict[str, Run]]:
    """One model's runs -> (model, {task: run}); several models or a repeated task is invalid."""
    items = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    try:
        runs = load_runs(items)
    except BoardError as exc:
        raise GateError(f"{label}: {exc}") from None
    models = sorted({r.model for r in runs})
    if len(models) > 1:
        raise GateError(f"{label}: {', '.join(map(str, items))} holds runs of {len(models)} models "
                        f"({', '.join(models)}); point at one model's results")
    tasks: dict[str, Run] = {}
    for r in runs:
        for t in r.tasks:
            if t in tasks:
                raise GateError(f"{label}: task {t} is in two files ({tasks[t].path}, {r.path}); keep one")
            tasks[t] = r
    return models[0], tasks


def run_gate(baseline, candidate, policy=None, out: str | Path | None = None) -> GateResult:
    pol = load_policy(policy)
    try:
        spec = load_spec(pol.spec)
    except BoardError as exc:
        raise GateError(f"{pol.source}: {exc}") from None
    base_model, base = _side("baseline", baseline)
    cand_model, cand = _side("candidate", candidate)
    notes: list[str] = []

    problems = []
    for label, runs in (("baseline", base), ("candidate", cand)):
        for r in {id(r): r for r in runs.values()}.values():
            if r.limit is not None and not pol.allow_limit:
                problems.append(f"{label} {r.path}: made with --limit {r.limit:g}; compare complete runs "
                                f"or set allow_limit: true in the policy")
    shared = sorted(set(base) & set(cand))
    # "all" is every task of the overall score (the capability domains); ICL variants are
    # compared when the policy names them (their 0-shot rows repeat the base tasks)
    resolved = {name: (d.name, entry) for d, entry, name in spec.resolve(set(shared))}
    icl = {name: (None, spec.icl) for name in spec.icl_tasks(set(shared))}
    wanted = pol.tasks if pol.tasks is not None else [t for t in shared if t in resolved or t in pol.metrics]
    for t in wanted:
        if t not in shared:
            problems.append(f"task {t} (named in the policy) is not in both runs "
                            f"(baseline: {'yes' if t in base else 'no'}, candidate: {'yes' if t in cand else 'no'})")
    wanted = [t for t in wanted if t in shared]
    if not wanted and not problems:
        problems.append(f"no task to compare: baseline has {sorted(base) or 'none'}, candidate has "
                        f"{sorted(cand) or 'none'}; the policy's spec is '{pol.spec}'")
    for t in wanted:
        p, _ = validate.check_consistency(t, [(base_model, base[t]), (cand_model, cand[t])])
        problems += p
    if problems:
        raise GateError.many(problems, "cannot gate")

    rng = np.random.default_rng(pol.seed)
    checks: list[Check] = []
    for t in wanted:
        domain, entry = resolved.get(t) or icl.get(t) or (None, None)
        metric = pol.metrics.get(t) or _metric(t, entry, base[t], cand[t])
        checks.append(_accuracy_check(t, domain, metric, base[t].tasks[t], cand[t].tasks[t], pol, rng, notes))
    holm = stats.holm([c.p_value for c in checks])
    for c, ph in zip(checks, holm):
        c.p_holm = ph
        c.passed = not ph < pol.alpha
        verdict = "regressed beyond the margin" if not c.passed else "no regression beyond the margin shown"
        c.message = (f"{c.name}: {verdict}: difference {_pts(c.observed, True)} points "
                     f"({100 * pol.level:.0f}% CI [{_pts(c.low, True)}, {_pts(c.high, True)}]), margin {_pts(c.margin)} "
                     f"points; {c.method} p={_p(c.p_value)}, Holm p={_p(c.p_holm)} vs alpha {pol.alpha}")
    checks += _budget_checks(pol, base, cand, notes)

    result = GateResult(
        passed=all(c.passed for c in checks), checks=checks,
        baseline=_describe(base_model, base), candidate=_describe(cand_model, cand),
        policy={"source": pol.source, "spec": pol.spec, "alpha": pol.alpha, "level": pol.level,
                "margins": {"default": pol.margin_default, "domains": pol.margin_domains, "tasks": pol.margin_tasks},
                "budgets": pol.budgets, "missing_cost": pol.on_missing_cost},
        notes=notes,
    )
    if out is not None:
        from slm_tasks.leaderboards.outputs import write_folder

        write_folder(Path(out), {"gate.md": result.to_markdown(), "gate.json": result.to_json(),
                                 "gate.junit.xml": result.to_junit()})
    return result


def _metric(task, entry, brun: Run, crun: Run) -> str:
    options = entry.metrics if entry else ["acc,none"]
    for m in options:
        if brun.tasks[task].value(m) is not None and crun.tasks[task].value(m) is not None:
            return m
    raise GateError(f"task {task}: neither run reports any of {options}; name the metric under "
                    f"'metrics:' in the policy")


def _describe(model: str, runs: dict[str, Run]) -> dict[str, Any]:
    files = sorted({str(r.path) for r in runs.values()})
    return {"model": model, "files": files, "tasks": sorted(runs)}


def _accuracy_check(task, domain, metric, b, c, pol: Policy, rng, notes) -> Check:
    name, _, flt = metric.partition(",")
    sb, sc = b.samples(flt), c.samples(flt)
    for label, tr, s in (("baseline", b, sb), ("candidate", c, sc)):
        if s is None or s.numeric(name) is None:
            raise GateError(
                f"task {task}: the {label} has no per-document {metric} values "
                f"({tr.samples_path or 'no samples file'}); rerun with --log_samples, the gate pairs documents")
    problems = validate.check_shared_docs(task, b, c, flt)
    if problems:
        raise GateError.many(problems, "cannot gate")
    vb = dict(zip(sb.doc_ids, sb.numeric(name)))
    vc = dict(zip(sc.doc_ids, sc.numeric(name)))
    docs = sorted(set(vb) & set(vc))
    if not docs:
        raise GateError(f"task {task}: baseline and candidate share no documents")
    if len(docs) < max(len(vb), len(vc)):
        notes.append(f"task {task}: compared on the {len(docs)} shared documents "
                     f"(baseline {len(vb)}, candidate {len(vc)})")
    xb = np.array([vb[d] for d in docs])
    xc = np.array([vc[d] for d in docs])
    if not b.higher_is_better.get(name, True):  # lower is better: compare the negated metric
        xb, xc = -xb, -xc
    margin = pol.margin(task, domain)
    if stats.is_binary(xb) and stats.is_binary(xc):
        r = stats.mcnemar_regression(xb, xc, margin, pol.level)
    else:
        r = stats.paired_bootstrap_regression(xb, xc, margin, pol.level, pol.bootstrap_iters, rng)
    se_b, se_c = b.stderr(metric), c.stderr(metric)
    p_unpaired = None
    if se_b is not None and se_c is not None:
        p_unpaired = stats.unpaired_regression(b.value(metric), se_b, c.value(metric), se_c, margin)
    return Check(
        name=f"{task} {metric}", kind="accuracy", passed=True, message="", observed=r.diff, low=r.low, high=r.high,
        margin=margin, baseline=float(xb.mean()), candidate=float(xc.mean()), p_value=r.p_value,
        p_unpaired=p_unpaired, method=r.method, n=r.n,
        discordant=None if r.base_only is None else {"baseline_only": r.base_only, "candidate_only": r.cand_only},
        non_inferiority_shown=bool(r.low > -margin),
    )


def _budget_checks(pol: Policy, base, cand, notes) -> list[Check]:
    checks = []
    if not pol.budgets:
        return checks
    crec = _one_record("candidate", cand, notes)
    brec = _one_record("baseline", base, notes)
    for key, rule in pol.budgets.items():
        title, unit, lower = COST_COLUMNS[key]
        cv = cost_values(crec)[key][0] if crec else None
        bv = cost_values(brec)[key][0] if brec else None
        for kind, limit in rule.items():
            limit = float(limit)
            if kind in ("max_increase", "max_decrease"):
                bound = None if bv is None else bv * (1 + limit if kind == "max_increase" else 1 - limit)
                what = f"{'+' if kind == 'max_increase' else '−'}{100 * limit:g}% of the baseline"
            else:
                bound, what = limit, kind
            name = f"{key} {kind}"
            if cv is None or bound is None:
                missing = "candidate" if cv is None else "baseline"
                ok = pol.on_missing_cost == "skip"
                checks.append(Check(name, "budget", ok, f"{name}: the {missing} has no measured {key} "
                                    f"({'skipped' if ok else 'fails'}: budgets.missing is {pol.on_missing_cost})",
                                    observed=cv, limit=bound, baseline=bv, candidate=cv))
                continue
            ok = cv <= bound if lower else cv >= bound
            diff = f", baseline {_unit(key, bv)} ({(cv - bv) / bv:+.1%})" if bv else ""
            checks.append(Check(name, "budget", ok,
                                f"{name}: candidate {title} {_unit(key, cv)}{diff}; budget {what} = {_unit(key, bound)}",
                                observed=cv, limit=bound, baseline=bv, candidate=cv))
    return checks


def _one_record(label, runs: dict[str, Run], notes) -> dict | None:
    records = {id(r): r for r in runs.values() if r.cost}
    if not records:
        return None
    if len(records) > 1:
        notes.append(f"{label}: {len(records)} cost records; budgets use the first ({next(iter(records.values())).path})")
    return next(iter(records.values())).cost
