"""Which ICL variants (:mod:`slm_tasks.icl`) can run against a data mirror, and why the
others are skipped (a mirror may lack the split few-shot examples come from)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from slm_tasks import data
from slm_tasks.paths import task_dir


@dataclass
class Variants:
    """``run``: task/group names to pass to lm-eval; ``skipped``: ICL task -> reason."""

    run: list[str]
    skipped: dict[str, str]


def _icl_dir() -> Path:
    return task_dir() / "icl"


def _icl_configs() -> tuple[dict[str, dict], dict[str, list[str]]]:
    """ICL task name -> resolved YAML (functions unresolved); group name -> members."""
    from lm_eval.tasks._yaml_loader import load_yaml

    tasks, groups = {}, {}
    for p in sorted(_icl_dir().glob("*.yaml")):
        cfg = load_yaml(p, resolve_func=False)
        if "group" in cfg:
            groups[cfg["group"]] = list(cfg["task"])
        else:
            tasks[cfg["task"]] = cfg
    return tasks, groups


def available_variants(task_names: Iterable[str], data_dir: str | Path | None = None) -> Variants:
    """Which ICL tasks among ``task_names`` can run against the mirror ``data_dir``.

    ``data_dir`` defaults to ``$SLM_DATA_DIR``; with neither, data comes from the hub and
    every variant runs. A k-shot variant (k > 0) is skipped when the mirror lacks the split
    its few-shot examples come from (it is never replaced by the split being scored); any
    variant is skipped when the mirror lacks its eval data. ICL groups are kept whole when
    all their members run, else replaced by the members that run. Names that are not ICL
    tasks pass through unchanged.
    """
    root = data.data_dir(data_dir)
    tasks, groups = _icl_configs()
    skipped: dict[str, str] = {}

    def why_not(name: str) -> str | None:
        if root is None:
            return None
        kw = tasks[name].get("dataset_kwargs") or {}
        hub_id, config = kw.get("hub_id"), kw.get("hub_config")
        configs = kw.get("hub_configs") or [config]
        shots = int(tasks[name].get("num_fewshot") or 0)
        for cfg in configs:
            repo = root / hub_id
            if not repo.is_dir():
                return f"the mirror {root} has no {hub_id}/"
            try:
                files = data.mirror_files(repo, cfg)
            except data.SLMDataError as exc:
                return str(exc)
            label = f"{hub_id} ({cfg or 'default'})"
            if kw.get("eval_split") and kw["eval_split"] not in files:
                return f"the mirror {root} has no '{kw['eval_split']}' split of {label}"
            fs = kw.get("fewshot_split")
            if shots > 0 and fs and fs not in files:
                return (
                    f"{shots}-shot needs few-shot examples from the '{fs}' split of {label}, which "
                    f"the mirror {root} lacks (examples are never drawn from the split being scored); "
                    f"use the hub or a mirror with that split"
                )
        return None

    def expand(name: str) -> list[str]:
        if name in groups:
            parts = [x for m in groups[name] for x in expand(m)]
            return [name] if parts == groups[name] else parts
        if name in tasks:
            reason = why_not(name)
            if reason:
                skipped[name] = reason
                return []
        return [name]

    run = [x for name in task_names for x in expand(name)]
    return Variants(run=list(dict.fromkeys(run)), skipped=skipped)
