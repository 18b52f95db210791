"""Dump the requests and resolved config of every slm_* task and group, to diff two trees.

A refactor of the task YAMLs (shared keys moved into an included template, say) must leave
what lm-eval builds unchanged. Run this before and after and diff the two files:

    SLM_DATA_DIR=../shared/hub HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 \
        python benchmarks/dump_task_requests.py --limit 5 --out /tmp/before.json
    ... edit ...
    python benchmarks/dump_task_requests.py --limit 5 --out /tmp/after.json
    diff /tmp/before.json /tmp/after.json && echo identical

Each task's requests are built as lm-eval's evaluator builds them (its own num_fewshot,
few-shot seed 1234, the first --limit docs): (doc_id, idx, arguments) per request. Each
config is TaskConfig.to_dict() with callables named by module.qualname, memory addresses
and the repository path blanked, so two checkouts compare equal.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

FEWSHOT_SEED = 1234  # lm-eval's default fewshot_random_seed


def _named(value):
    """JSON for what json cannot write: functions and classes by their dotted name."""
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}"
    return str(value)


def _stable(obj, repo: Path) -> object:
    """`obj` as plain JSON with nothing tied to this process or checkout."""
    text = json.dumps(obj, default=_named, sort_keys=True)
    text = re.sub(r"0x[0-9a-f]+", "0x", text).replace(str(repo), "<repo>")
    return json.loads(text)


def _walk(tree: dict, groups: dict, tasks: dict) -> None:
    """lm-eval's nested task dict: ConfigurableGroup -> subtree, or task name -> Task."""
    for key, value in tree.items():
        if isinstance(value, dict):
            config = key.config if isinstance(key.config, dict) else key.config.to_dict()
            groups[key.group_name] = {"config": config, "members": sorted(_names(value))}
            _walk(value, groups, tasks)
        else:
            tasks[key] = value


def _names(tree: dict) -> list[str]:
    return [k.group_name if isinstance(v, dict) else k for k, v in tree.items()]


def dump(limit: int) -> dict:
    from lm_eval.tasks import get_task_dict

    from slm_tasks.activation import task_dir
    from slm_tasks.api import task_manager

    repo = task_dir().resolve().parent  # the checkout whose task YAMLs are read
    tm = task_manager(include_defaults=False)
    names = sorted(n for n in tm.all_tasks if n.startswith("slm_"))
    groups, tasks = {}, {}
    for name in names:  # one at a time: a group and its members are all listed by name
        _walk(get_task_dict([name], tm), groups, tasks)
    out = {"groups": {}, "tasks": {}}
    for name in sorted(groups):
        out["groups"][name] = _stable(groups[name], repo)
    for name in sorted(tasks):
        task = tasks[name]
        task.set_fewshot_seed(seed=FEWSHOT_SEED)
        try:
            task.build_all_requests(limit=limit)
            built = {"requests": [[i.doc_id, i.idx, list(i.arguments)] for i in task.instances]}
        # a mirror without a few-shot split: recorded, so both dumps must fail alike
        except Exception as exc:  # noqa: BLE001
            built = {"error": f"{type(exc).__name__}: {exc}"}
        out["tasks"][name] = _stable({"config": task.dump_config(), **built}, repo)
        shown = built.get("error", "")[:60] or f"{len(built['requests'])} requests"
        print(f"{name}: {shown}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=5, help="docs per task (default 5)")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = ap.parse_args(argv)
    result = dump(args.limit)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(result['tasks'])} tasks, {len(result['groups'])} groups -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
