"""The gate verdict of one format of a quantisation sweep against the sweep's reference.

The release gate itself (``release_gate.run_gate``: per task, exact McNemar for a drop beyond
the margin, Tango's interval for non-inferiority, Holm across tasks) under the quantisation
policy's ``gate`` section, plus two kinds of check the policy adds:

* a domain check per capability domain: the paired domain difference's interval
  (``quant_compare.paired_tasks``) against ``domains.margin``;
* a KL check: the mean KL divergence of the multiple-choice questions' choice distributions,
  with one-sided bootstrap bounds at 1 - alpha, against ``kl.max_mean``.

The result is the gate's :class:`GateResult`: the same verdicts, exit codes (0 passed, 1
failed, 3 not shown; 2 invalid input) and reports (gate.md, gate.json, gate.junit.xml).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

import slm_tasks.leaderboards.quant_compare as quant_compare
from slm_tasks.leaderboards.gate_checks import FAIL, NOT_SHOWN, PASS, Check
from slm_tasks.leaderboards.gate_policy import Policy, load_policy
from slm_tasks.leaderboards.gate_report import GateResult, md_text
from slm_tasks.leaderboards.release_gate import run_gate
from slm_tasks.results import stats
from slm_tasks.results.errors import GateError

QUANT_POLICY_SCHEMA = "slm-suite.quant-policy/1"
PACKAGED = "quant_policy"


@dataclass
class QuantPolicy:
    gate: Policy
    domain_level: float = 0.95
    domain_margin: float = 0.02
    kl_max_mean: float | None = 0.01
    bootstrap_iters: int = 5000
    seed: int = 1234
    source: str = ""

    def describe(self) -> dict:
        return {
            "source": self.source,
            "domains": {"level": self.domain_level, "margin": self.domain_margin},
            "kl": {"max_mean": self.kl_max_mean},
        }


def load_quant_policy(policy: str | Path | dict | QuantPolicy | None = None) -> QuantPolicy:
    """A quantisation policy from a YAML file, a dict, or the packaged example (None)."""
    if isinstance(policy, QuantPolicy):
        return policy
    if isinstance(policy, dict):
        data, source = policy, "<dict>"
    else:
        path = Path(policy) if policy is not None else None
        if path is not None and path.is_file():
            text, source = path.read_text(encoding="utf-8"), path.name
        elif path is None or path.name == PACKAGED:
            text = (resources.files("slm_tasks.leaderboards") / f"{PACKAGED}.yaml").read_text(encoding="utf-8")
            source = f"{PACKAGED} (packaged)"
        else:
            raise GateError(
                f"quantisation policy '{policy}' not found; pass a YAML file (example: leaderboards/quant_policy.yaml)"
            )
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise GateError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or data.get("schema") != QUANT_POLICY_SCHEMA:
        raise GateError(f"{source}: a quantisation policy is a YAML mapping with schema: {QUANT_POLICY_SCHEMA}")
    unknown = sorted(set(data) - {"schema", "gate", "domains", "kl"})
    if unknown:
        raise GateError(f"{source}: unknown key(s) {unknown}; known: schema, gate, domains, kl")
    gate = load_policy(data.get("gate") or {})
    gate.source = f"{source}: gate"
    domains, kl = data.get("domains") or {}, data.get("kl") or {}
    try:
        pol = QuantPolicy(
            gate=gate,
            domain_level=float(domains.get("level", 0.95)),
            domain_margin=float(domains.get("margin", 0.02)),
            kl_max_mean=None if kl.get("max_mean") is None else float(kl["max_mean"]),
            bootstrap_iters=int(kl.get("bootstrap_iters", 5000)),
            seed=int(kl.get("seed", 1234)),
            source=source,
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise GateError(f"{source}: a value has the wrong type ({exc}); see leaderboards/quant_policy.yaml") from None
    bad_kl = pol.kl_max_mean is not None and pol.kl_max_mean <= 0
    if not 0.5 < pol.domain_level < 1 or pol.domain_margin < 0 or bad_kl:
        raise GateError(f"{source}: domains.level must be in (0.5, 1), domains.margin >= 0, kl.max_mean > 0")
    return pol


def domain_check(name: str, p: quant_compare.Paired, margin: float, level: float, smoke: bool) -> Check:
    """Failed when the whole interval lies below -margin; passed when its lower end is above
    -margin (never for a smoke comparison); otherwise not shown."""
    lvl = f"{100 * level:g}%"
    c = Check(
        name=f"domain {name}",
        kind="accuracy",
        status=NOT_SHOWN,
        message="",
        observed=p.diff,
        low=p.low,
        high=p.high,
        margin=margin,
        baseline=p.reference,
        candidate=p.value,
        p_value=p.p_value,
        method="paired domain difference, exact sign test",
        n=p.n,
        discordant={"baseline_only": p.worse, "candidate_only": p.better},
    )
    what = f"domain {name}: {100 * p.diff:+.2f} points [{100 * p.low:+.2f}, {100 * p.high:+.2f}] ({lvl})"
    if p.n == 0:
        c.reason = "no shared documents"
    elif p.high < -margin:
        c.status = FAIL
    elif p.low > -margin and not smoke:
        c.status, c.non_inferiority_shown = PASS, True
    else:
        c.reason = "smoke comparison" if smoke and p.low > -margin else f"the {lvl} interval reaches -margin"
    c.message = f"{what}, margin {100 * margin:g} points: {c.status}" + (f" ({c.reason})" if c.reason else "")
    return c


def kl_check(values, max_mean: float, alpha: float, iters: int, seed: int, smoke: bool) -> Check:
    """Bootstrap one-sided bounds at 1 - alpha on the mean KL (nats) against ``max_mean``."""
    v = np.asarray(values, float)
    c = Check(name="kl mean", kind="kl", status=NOT_SHOWN, message="", limit=max_mean, n=int(v.size))
    if v.size == 0:
        c.reason = "no multiple-choice question compared"
        c.message = f"mean KL: {c.reason}"
        return c
    draws = stats.bootstrap_means(v, iters, np.random.default_rng(seed))
    c.observed = c.candidate = float(v.mean())
    c.low, c.high = (float(x) for x in np.quantile(draws, [alpha, 1 - alpha]))
    c.method, c.bounds_of = "bootstrap over questions", "mean"
    if c.low > max_mean:
        c.status = FAIL
    elif c.high < max_mean and not smoke:
        c.status = PASS
    else:
        c.reason = "smoke comparison" if smoke and c.high < max_mean else "the bounds straddle the limit"
    c.message = (
        f"mean KL {c.observed:.5f} nats (one-sided {100 * (1 - alpha):g}% bounds "
        f"[{c.low:.5f}, {c.high:.5f}]) "
        f"against {max_mean:g}: {c.status}" + (f" ({c.reason})" if c.reason else "")
    )
    return c


def gate_format(reference, candidate, tasks, pol: QuantPolicy, out=None, allow_limit: bool | None = None, labels=None):
    """The gate of one format: ``reference``/``candidate`` are the two runs' results files,
    ``tasks`` the format's :class:`quant_compare.TaskQuality` list, ``labels`` the two formats'
    names (added to the model's name in the reports: both runs are of the same weights).
    Returns (GateResult, markdown); with ``out``, the three reports are written there."""
    result = run_gate(reference, candidate, pol.gate, allow_limit=allow_limit)
    for side, label in zip((result.baseline, result.candidate), labels or ()):
        side["model"] = f"{side['model']} [{label}]"
    domains: dict[str, list] = {}
    for t in tasks:
        domains.setdefault(t.domain or "(no domain)", []).append((t.reference, t.outcome))
    for name, pairs in domains.items():
        p = quant_compare.paired_tasks(pairs, pol.domain_level)
        result.checks.append(domain_check(name, p, pol.domain_margin, pol.domain_level, result.smoke))
    kl = [x for t in tasks for x in t.kl]
    if pol.kl_max_mean is not None:
        check = kl_check(kl, pol.kl_max_mean, pol.gate.alpha, pol.bootstrap_iters, pol.seed, result.smoke)
        result.checks.append(check)
    result.policy = result.policy | {"quantisation": pol.describe()}
    markdown = _with_kl(result)
    if out is not None:
        from slm_tasks.leaderboards.outputs import write_folder

        write_folder(
            Path(out),
            {"gate.md": markdown, "gate.json": result.to_json(), "gate.junit.xml": result.to_junit()},
        )
    return result, markdown


def _with_kl(result: GateResult) -> str:
    """The gate's Markdown with the KL check's row before the closing exit-code line."""
    text = result.to_markdown()
    kl = [c for c in result.checks if c.kind == "kl"]
    if not kl:
        return text
    head, sep, tail = text.rpartition("\nExit codes:")
    rows = ["Choice distributions: mean KL divergence D(reference ‖ format), nats.", ""]
    rows += [f"- {md_text(c.message)}" for c in kl]
    return head + "\n" + "\n".join(rows) + "\n" + sep + tail
