"""The release gate's policy (slm-suite.gate-policy/1): what is compared and how strictly.

See docs/leaderboard.md#the-release-gate; leaderboards/gate.yaml is the packaged example.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from slm_tasks.leaderboards.spec import COST_COLUMNS
from slm_tasks.results.errors import GateError

POLICY_SCHEMA = "slm-suite.gate-policy/1"
KNOWN_KEYS = {
    "schema",
    "spec",
    "alpha",
    "level",
    "bootstrap_iters",
    "seed",
    "tasks",
    "metrics",
    "margins",
    "budgets",
    "allow_limit",
}


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

    def describe(self) -> dict:
        """The policy as the reports show it (gate.json's ``policy``)."""
        return {
            "source": self.source,
            "spec": self.spec,
            "alpha": self.alpha,
            "level": self.level,
            "margins": {"default": self.margin_default, "domains": self.margin_domains, "tasks": self.margin_tasks},
            "budgets": self.budgets,
            "missing_cost": self.on_missing_cost,
            "allow_limit": self.allow_limit,
        }


def _read(policy) -> tuple[dict, str]:
    if policy is None or isinstance(policy, dict):
        return dict(policy or {}), "<dict>" if policy else "<defaults>"
    path = Path(policy)
    packaged = resources.files("slm_tasks.leaderboards") / f"{path.name}.yaml"
    if path.is_file():
        text, source = path.read_text(encoding="utf-8"), path.name
    elif not path.suffix and packaged.is_file():
        text, source = packaged.read_text(encoding="utf-8"), f"{path.name} (packaged)"
    else:
        raise GateError(f"gate policy '{policy}' not found; pass a YAML file (example: leaderboards/gate.yaml)")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise GateError(f"{source}: gate policy is not valid YAML ({str(exc).splitlines()[0]})") from None
    return data, source


def _budgets(raw, source: str) -> tuple[dict, str]:
    budgets = dict(raw or {})
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
        for kind, value in rule.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise GateError(f"{source}: budget {key} {kind} is {value!r}; give a number")
            # a relative budget is a fraction of the baseline: a decrease of 100% or more bounds nothing
            if kind == "max_increase" and value < 0 or kind == "max_decrease" and not 0 <= value < 1:
                raise GateError(
                    f"{source}: budget {key} {kind} is {value}; give a fraction "
                    f"({'>= 0' if kind == 'max_increase' else 'in [0, 1)'}, 0.10 = 10%)"
                )
    return budgets, on_missing


def load_policy(policy: str | Path | dict | Policy | None) -> Policy:
    if isinstance(policy, Policy):
        return policy
    data, source = _read(policy)
    if not isinstance(data, dict):
        raise GateError(f"{source}: a gate policy is a YAML mapping")
    if data.get("schema", POLICY_SCHEMA) != POLICY_SCHEMA:
        raise GateError(f"{source}: schema is {data.get('schema')!r}, expected '{POLICY_SCHEMA}'")
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise GateError(f"{source}: unknown policy key(s) {unknown}; known: {sorted(KNOWN_KEYS)}")
    margins = data.get("margins") or {}
    if not isinstance(margins, dict):
        margins = {"default": margins}
    budgets, on_missing = _budgets(data.get("budgets"), source)
    try:
        p = Policy(
            spec=str(data.get("spec", "default")),
            alpha=float(data.get("alpha", 0.05)),
            level=float(data.get("level", 0.95)),
            bootstrap_iters=int(data.get("bootstrap_iters", 5000)),
            seed=int(data.get("seed", 1234)),
            tasks=None if data.get("tasks") in (None, "all") else list(data["tasks"]),
            metrics=dict(data.get("metrics") or {}),
            margin_default=float(margins.get("default", 0.0)),
            margin_domains={k: float(v) for k, v in (margins.get("domains") or {}).items()},
            margin_tasks={k: float(v) for k, v in (margins.get("tasks") or {}).items()},
            budgets=budgets,
            on_missing_cost=on_missing,
            allow_limit=bool(data.get("allow_limit", False)),
            source=source,
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise GateError(f"{source}: a policy value has the wrong type ({exc}); see leaderboards/gate.yaml") from None
    if not 0 < p.alpha < 1 or not 0.5 < p.level < 1:
        raise GateError(f"{source}: alpha must be in (0, 1) and level in (0.5, 1)")
    if any(m < 0 for m in [p.margin_default, *p.margin_domains.values(), *p.margin_tasks.values()]):
        raise GateError(f"{source}: margins are non-negative accuracy fractions (0.02 = 2 points)")
    return p
