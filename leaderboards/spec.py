"""Board specs (leaderboards/*.yaml): the one definition of the suite's scores.

A spec names the capability domains, each with its tasks and metric, and the ICL protocol.
Every score is defined here and read by ``slm-suite run`` (its summary), the board and the
gate:

* task score: ``results[task]["<metric>,<filter>"]``;
* domain score: plain mean of its tasks' scores;
* overall score: plain mean of the capability domains (commonsense, problem solving, math,
  coding, long context), as in the SLM survey (Lu et al. 2024; long context from its v2);
* in-context learning: the gain from 0 to 5 shots of the ``slm_icl_<task>_<k>shot`` variants,
  paired on the same documents (slm_tasks.results.icl_gain), reported beside the overall, never in it:
  their 0-shot rows are the base tasks again.

A task entry is ``{task: name, metric: "acc,none" | [alternatives...], random_baseline: x}``
or ``{match: "slm_*math500", metric: ...}`` (a glob over the task names found in the
results); a domain's ``metric`` is the default of its tasks.

``version`` numbers the definition (2: long context joined the overall). A run through the
suite group (``slm_suite`` / ``slm_suite_lite``) records the version it was built under as
that group's version in its results; a board never mixes runs of different versions.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from slm_tasks.results.errors import BoardError

T = TypeVar("T")
SPEC_SCHEMA = "slm-suite.board-spec/1"
COST_COLUMNS = {
    # id: (title, unit, lower is better)
    "ttft_ms": ("first-token latency", "ms", True),
    "decode_ms_per_token": ("decode", "ms/token", True),
    "prefill_tok_s": ("prefill", "tokens/s", False),
    "throughput_tok_s": ("throughput", "tokens/s", False),
    # the bench's load of the stored model when there is one (cost_columns.cost_values)
    "peak_memory_bytes": ("peak memory, bench else run", "GB", True),
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

    def pick_metric(self, reported: Callable[[str], bool]) -> str | None:
        """The first listed metric that ``reported`` accepts: a column never mixes metrics."""
        return next((m for m in self.metrics if reported(m)), None)


@dataclass
class DomainSpec:
    name: str
    title: str
    tasks: list[TaskSpec]


@dataclass
class IclSpec:
    """The ICL variants (a glob) and the gain reported for them: ``high``-shot minus
    ``low``-shot ``metric``, per task and averaged; outside the overall score."""

    title: str
    match: str
    metric: str = "acc,none"
    low: int = 0
    high: int = 5

    @property
    def metrics(self) -> list[str]:
        return [self.metric]


def combine(
    task_scores: Mapping[str, T], domain_tasks: Mapping[str, Sequence[str]], mean: Callable[[list[T]], T]
) -> tuple[dict[str, T], T | None]:
    """Domain scores and the overall score from task scores: the one definition.

    ``domain_tasks``: each capability domain's tasks that are on the board (or in the run).
    A domain is the plain mean of its tasks, the overall the plain mean of the domains; a
    domain lacking one of its tasks has no score, and then the overall has none either.
    """
    domains = {
        d: mean([task_scores[t] for t in tasks])
        for d, tasks in domain_tasks.items()
        if tasks and all(t in task_scores for t in tasks)
    }
    complete = bool(domain_tasks) and len(domains) == len(domain_tasks)
    return domains, (mean(list(domains.values())) if complete else None)


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
    icl: IclSpec | None = None
    version: int = 1

    @property
    def suite_group(self) -> str:
        """The group whose version in a results file is the spec version it was built under."""
        return "slm_suite_lite" if self.profile == "lite" else "slm_suite"

    def check_versions(self, runs) -> None:
        """Refuse runs built under different spec versions (one line naming them and the fix)."""
        by_version: dict[int, list[str]] = {}
        for run in runs:
            found = _number_text((run.results.get("versions") or {}).get(self.suite_group))
            if found is not None:  # lm-eval writes a group's version as text ("2.0")
                by_version.setdefault(int(found), []).append(Path(run.path).name)
        if len(by_version) > 1 or (by_version and self.version not in by_version):
            named = {v: ", ".join(sorted(files)[:3]) for v, files in by_version.items()}
            parts = "; ".join(f"version {v}: {files}" for v, files in sorted(named.items()))
            raise BoardError(
                f"board '{self.name}' is board-spec version {self.version}, but its results were built "
                f"under other versions ({parts}); rerun those models with this slm-suite, or build "
                f"a board from runs of one version"
            )

    def resolve(self, present: set[str]) -> list[tuple[DomainSpec, TaskSpec, str]]:
        """(domain, entry, task name) for every task of a capability domain; globs expand
        over ``present``."""
        out = []
        for d in self.domains:
            for t in d.tasks:
                if t.task:
                    out.append((d, t, t.task))
                else:
                    for name in sorted(n for n in present if fnmatch.fnmatchcase(n, t.match)):
                        out.append((d, t, name))
        return out

    def icl_tasks(self, present: set[str]) -> list[str]:
        """The ICL variants among ``present``."""
        if self.icl is None:
            return []
        return sorted(n for n in present if fnmatch.fnmatchcase(n, self.icl.match))

    def score(self, results: Mapping[str, Any]) -> dict[str, Any]:
        """Domain and overall scores of one lm-eval results dict (``results_*.json`` or
        ``simple_evaluate``'s output), as the board scores that run on its own.

        Intervals come from lm-eval's stderrs (normal, clamped to [0, 1]; domains and overall
        combined by MOVER); the board uses per-doc samples where it has them; the values are
        the same.
        """
        from slm_tasks.results import stats

        res = results.get("results") or {}
        scores, metrics, domain_tasks = {}, {}, {}
        for d, entry, task in self.resolve(set(res)):
            row = res.get(task)
            if not isinstance(row, Mapping):
                continue
            metric = entry.pick_metric(lambda m: _number(row.get(m)) is not None)  # noqa: B023
            if metric is None:
                continue
            name, _, flt = metric.partition(",")
            scores[task] = stats.task_estimate(
                _number(row[metric]), None, _number(row.get(f"{name}_stderr,{flt}")), self.level, 0, None
            )
            metrics[task] = metric
            domain_tasks.setdefault(d.name, []).append(task)
        domains, overall = combine(scores, domain_tasks, lambda parts: stats.mean_estimate(parts, self.level))
        return {
            "spec": self.name,
            "domains": {
                d.name: {
                    "title": d.title,
                    "value": domains[d.name].value,
                    "se": domains[d.name].se,
                    "declared": len(d.tasks),
                    "tasks": {t: {"metric": metrics[t], "value": scores[t].value} for t in domain_tasks[d.name]},
                }
                for d in self.domains
                if d.name in domains
            },
            "overall": overall.value if overall else None,
            "overall_se": overall.se if overall else None,
            "absent_domains": [d.name for d in self.domains if d.name not in domain_tasks],
            "missing_tasks": [t.task for d in self.domains for t in d.tasks if t.task and t.task not in scores],
        }


def _number_text(x) -> float | None:
    try:
        return None if isinstance(x, bool) or x is None else float(x)
    except (TypeError, ValueError):
        return None


def _number(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


# packaged YAML files that are not board specs (gate and quantisation policies, sweep profiles)
_POLICIES = frozenset({"gate.yaml", "quant_policy.yaml", "quant_profiles.yaml"})


def packaged_specs() -> list[str]:
    root = resources.files("slm_tasks.leaderboards")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml") and p.name not in _POLICIES)


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
            name = t.get("task")
            if str(name or t.get("match")).startswith("slm_icl_"):
                raise bad(
                    f"domain {d['name']} lists {name or t.get('match')}: ICL variants are reported "
                    f"as a gain under 'icl:', outside the overall (their 0-shot rows are the base tasks)"
                )
            metrics = _metrics(
                t.get("metric", d.get("metric", "acc,none")),
                bad,
                f"domain {d['name']}: metric of {name or t.get('match')}",
            )
            if name and profile == "lite" and not name.endswith("_lite"):
                raise bad(f"profile lite lists '{name}'; lite tasks are named <task>_lite")
            tasks.append(TaskSpec(name, t.get("match"), metrics, t.get("random_baseline"), t.get("title")))
        domains.append(DomainSpec(d["name"], d.get("title", d["name"]), tasks))
    if not domains:
        raise bad("no domains declared")
    icl = _icl(data.get("icl"), bad)
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
        icl=icl,
        version=_version(data.get("version", 1), bad),
    )


def _version(value, bad) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad(f"version must be a whole number from 1, not {value!r}")
    return value


def _metrics(value, bad, what: str) -> list[str]:
    metrics = [value] if isinstance(value, str) else list(value or [])
    if not metrics or not all(isinstance(m, str) and "," in m for m in metrics):
        raise bad(f"{what} must be 'metric,filter' (e.g. 'acc,none') or a list of them")
    return metrics


def _icl(data, bad) -> IclSpec | None:
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("match"), str):
        raise bad("icl needs 'match' (a glob over the ICL variants, e.g. 'slm_icl_*shot')")
    metric = data.get("metric", "acc,none")
    if not isinstance(metric, str) or "," not in metric:
        raise bad("icl: metric is one 'metric,filter' (e.g. 'acc,none'): the gain compares one metric")
    shots = data.get("shots", [0, 5])
    if (
        not isinstance(shots, list)
        or len(shots) != 2
        or not all(isinstance(k, int) for k in shots)
        or not 0 <= shots[0] < shots[1]
    ):
        raise bad("icl: shots is [low, high], e.g. [0, 5] (the gain is high-shot minus low-shot)")
    return IclSpec(str(data.get("title") or "In-context learning"), data["match"], metric, shots[0], shots[1])
