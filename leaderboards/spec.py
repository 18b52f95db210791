"""Board specs (leaderboards/*.yaml): tasks and metrics per domain, cost columns, hardware.

A task entry is ``{task: name, metric: "acc,none" | [alternatives...], random_baseline: x}``
or ``{match: "slm_icl_*", metric: ...}`` (a glob over the task names found in the results).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from slm_tasks.leaderboards.errors import BoardError

SPEC_SCHEMA = "slm-suite.board-spec/1"
COST_COLUMNS = {
    # id: (title, unit, lower is better)
    "ttft_ms": ("first-token latency", "ms", True),
    "decode_ms_per_token": ("decode", "ms/token", True),
    "prefill_tok_s": ("prefill", "tokens/s", False),
    "throughput_tok_s": ("throughput", "tokens/s", False),
    "peak_memory_bytes": ("peak memory", "GB", True),
    "energy_per_token_j": ("energy", "J/token", True),
    "wall_s": ("eval wall time", "s", True),
    "model_bytes": ("model size", "GB", True),
}


@dataclass
class TaskSpec:
    task: str | None
    match: str | None
    metrics: list[str]
    random_baseline: float | None = None
    title: str | None = None


@dataclass
class DomainSpec:
    name: str
    title: str
    tasks: list[TaskSpec]


@dataclass
class Spec:
    name: str
    title: str
    profile: str  # "full" | "lite"
    domains: list[DomainSpec]
    allow_limit: bool = False
    normalize: bool = True
    level: float = 0.95
    bootstrap_iters: int = 2000
    seed: int = 1234
    cost_columns: list[str] = field(default_factory=lambda: list(COST_COLUMNS))
    hardware: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def resolve(self, present: set[str]) -> list[tuple[DomainSpec, TaskSpec, str]]:
        """(domain, entry, task name) for every declared task; globs expand over ``present``."""
        out = []
        for d in self.domains:
            for t in d.tasks:
                if t.task:
                    out.append((d, t, t.task))
                else:
                    for name in sorted(n for n in present if fnmatch.fnmatchcase(n, t.match)):
                        out.append((d, t, name))
        return out


def packaged_specs() -> list[str]:
    root = resources.files("slm_tasks.leaderboards")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml") and p.name != "gate.yaml")


def load_spec(spec: str | Path | dict | None = None) -> Spec:
    """A spec from a path, a packaged name (``lite``, ``default``), a dict, or the default."""
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, dict):
        return parse_spec(spec, "<dict>")
    name = str(spec or "default")
    path = Path(name)
    if not path.is_file():
        candidate = resources.files("slm_tasks.leaderboards") / f"{Path(name).stem}.yaml"
        if path.suffix or not candidate.is_file():
            raise BoardError(
                f"board spec '{name}' not found; pass a YAML path or one of: {', '.join(packaged_specs())}"
            )
        text, source = candidate.read_text(encoding="utf-8"), f"{Path(name).stem} (packaged)"
    else:
        text, source = path.read_text(encoding="utf-8"), str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BoardError(f"{source}: board spec is not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_spec(data, source)


def parse_spec(data: Any, source: str) -> Spec:
    def bad(msg):
        return BoardError(f"{source}: {msg}")

    if not isinstance(data, dict):
        raise bad("a board spec is a YAML mapping")
    if data.get("schema", SPEC_SCHEMA) != SPEC_SCHEMA:
        raise bad(f"schema is {data.get('schema')!r}, expected '{SPEC_SCHEMA}'")
    profile = data.get("profile", "full")
    if profile not in ("full", "lite"):
        raise bad(f"profile must be 'full' or 'lite', not {profile!r}")
    domains = []
    for i, d in enumerate(data.get("domains") or []):
        if not isinstance(d, dict) or not d.get("name") or not isinstance(d.get("tasks"), list):
            raise bad(f"domains[{i}] needs 'name' and a 'tasks' list")
        tasks = []
        for j, t in enumerate(d["tasks"]):
            if isinstance(t, str):
                t = {"task": t}
            if not isinstance(t, dict) or bool(t.get("task")) == bool(t.get("match")):
                raise bad(f"domain {d['name']}: tasks[{j}] needs exactly one of 'task' or 'match'")
            metrics = t.get("metric", ["acc,none"])
            metrics = [metrics] if isinstance(metrics, str) else list(metrics)
            if not metrics or not all(isinstance(m, str) and "," in m for m in metrics):
                raise bad(f"domain {d['name']}: metric of {t.get('task') or t.get('match')} must be "
                          f"'metric,filter' (e.g. 'acc,none') or a list of them")
            name = t.get("task")
            if name and profile == "lite" and not name.endswith("_lite"):
                raise bad(f"profile lite lists '{name}'; lite tasks are named <task>_lite")
            tasks.append(TaskSpec(name, t.get("match"), metrics, t.get("random_baseline"), t.get("title")))
        domains.append(DomainSpec(d["name"], d.get("title", d["name"]), tasks))
    if not domains:
        raise bad("no domains declared")
    cost = data.get("cost") or {}
    columns = cost.get("columns", list(COST_COLUMNS))
    unknown = [c for c in columns if c not in COST_COLUMNS]
    if unknown:
        raise bad(f"unknown cost column(s) {unknown}; known: {', '.join(COST_COLUMNS)}")
    iv = data.get("intervals") or {}
    level = float(iv.get("level", 0.95))
    if not 0.5 < level < 1:
        raise bad("intervals.level must be between 0.5 and 1")
    return Spec(
        name=str(data.get("name") or Path(source.split(" ")[0]).stem),
        title=str(data.get("title") or data.get("name") or "slm-suite leaderboard"),
        profile=profile,
        domains=domains,
        allow_limit=bool(data.get("allow_limit", False)),
        normalize=bool(data.get("normalize", True)),
        level=level,
        bootstrap_iters=int(iv.get("bootstrap_iters", 2000)),
        seed=int(iv.get("seed", 1234)),
        cost_columns=columns,
        hardware=dict(cost.get("hardware") or {}),
        source=source,
    )
