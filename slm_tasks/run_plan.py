"""What a run will do, known before it starts: the tasks lm-eval loads, their documents and
requests per phase, and the header ``slm-suite run`` prints.

lm-eval's ``simple_evaluate`` loads its tasks through the TaskManager it is given;
:func:`preload` loads them once and lets that TaskManager hand the same objects to
``simple_evaluate``, so counting costs no second load and no second few-shot draw.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class Plan:
    tasks: dict[str, int] = field(default_factory=dict)  # task -> documents to evaluate
    requests: dict[str, int] = field(default_factory=dict)  # lm-eval request type -> count
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (task, why)
    lacks: set[str] = field(default_factory=set)  # "<dataset> '<split>'" the mirror has not

    @property
    def documents(self) -> int:
        return sum(self.tasks.values())


def preload(tm, tasks) -> dict:
    """``tm.load(tasks)`` once; later loads of the same list by ``tm`` return it again."""
    loaded = tm.load(list(tasks))
    original = tm.load

    def load(task_list, *args, **kwargs):
        if list(task_list) == list(tasks) and not args and not kwargs:
            return loaded
        return original(task_list, *args, **kwargs)

    tm.load = load  # this TaskManager only: lm-eval's class is untouched
    return loaded


def count(loaded: dict, limit: float | None) -> Plan:
    """Documents per task and requests per type, as lm-eval's evaluator will build them."""
    from lm_eval.evaluator_utils import get_sample_size

    from slm_tasks.data import missing_fewshot

    plan = Plan(skipped=list(loaded.get("slm_skipped", [])))
    for name, task in loaded.get("tasks", {}).items():
        why = missing_fewshot(dict(task.config.dataset_kwargs or {}), (task.config.metadata or {}).get("slm_data_dir"))
        if why:
            dataset, _, rest = why.partition(" has no ")
            plan.lacks.add(f"{dataset} ({rest.split(' split in ')[0]})")
        docs = task.eval_docs
        n = get_sample_size(task, limit)
        n = len(docs) if n is None else min(n, len(docs))
        plan.tasks[name] = n
        kind = task.OUTPUT_TYPE
        if kind == "multiple_choice":
            per = sum(len(task.doc_to_choice(docs[i])) for i in range(n))
            extra = per if "acc_mutual_info" in {m["metric"] for m in task.config.metric_list or []} else 0
            plan.requests["loglikelihood"] = plan.requests.get("loglikelihood", 0) + per + extra
        else:
            plan.requests[kind] = plan.requests.get(kind, 0) + n * max(int(task.config.repeats or 1), 1)
    return plan


def header(plan: Plan, spec, data_dir: str | None) -> list[str]:
    """A few lines: the model (``spec``, the :class:`~slm_tasks.adapters.model_spec.ModelSpec`
    the backend runs) and the format that computes the scores, backend, threads, tasks,
    documents and requests, and where the data comes from (and what it lacks)."""
    reqs = ", ".join(f"{n:,} {k}" for k, n in plan.requests.items())
    root = data_dir or os.environ.get("SLM_DATA_DIR")
    model = (
        "model: as the backend resolves it (a cluster's workers, or another lm-eval model)"
        if spec is None
        else f"model: {spec.requested} ({spec.scoring}); backend {spec.backend}"
        + (f", {spec.threads} thread{'s' if spec.threads != 1 else ''}" if spec.threads else "")
    )
    lines = [
        model,
        f"tasks: {len(plan.tasks)} tasks, {plan.documents:,} documents, {reqs}",
        f"data: {'offline mirror ' + str(root) + ' (sha256-checked)' if root else 'the Hugging Face hub'}",
    ]
    if spec is not None and spec.origin:
        lines.insert(1, f"  weights from the {spec.origin}")
    if plan.lacks:
        lines.append(f"  no few-shot split in the mirror for {', '.join(sorted(plan.lacks))}: those tasks run 0-shot")
    if plan.skipped:
        lines.append(
            f"  skipped {len(plan.skipped)} few-shot variant(s) that need them: "
            + ", ".join(t for t, _ in plan.skipped)
        )
    return lines
