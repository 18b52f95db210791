"""`slm-suite data`: which tasks an offline mirror can run, and at which shot counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from slm_tasks import data
from slm_tasks.errors import SLMError
from slm_tasks.paths import task_dir


class _TagTolerantLoader(yaml.SafeLoader):
    pass


_TagTolerantLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _task_yaml() -> dict[str, tuple[dict, int]]:
    """task name -> (its dataset_kwargs, its num_fewshot), following ``include:`` chains."""
    raw: dict[Path, dict] = {}
    for path in sorted(task_dir().rglob("*.yaml")):
        raw[path] = yaml.load(path.read_text(encoding="utf-8"), Loader=_TagTolerantLoader) or {}

    def resolved(path: Path, key: str):
        cfg = raw.get(path, {})
        if key in cfg:
            return cfg[key]
        if "include" in cfg:
            return resolved((path.parent / cfg["include"]).resolve(), key)
        return None

    out = {}
    for path, cfg in raw.items():
        if "task" in cfg and isinstance(cfg["task"], str) and "group" not in cfg:
            kwargs = resolved(path, "dataset_kwargs")
            if kwargs:
                out[cfg["task"]] = (dict(kwargs), int(resolved(path, "num_fewshot") or 0))
    return out


def task_data_specs() -> dict[str, dict]:
    """task name -> its dataset_kwargs, following ``include:`` chains (YAML only)."""
    return {name: kwargs for name, (kwargs, _) in _task_yaml().items()}


def missing_message(n: int, source: dict | None = None) -> str:
    """Why ``n`` examples cannot be drawn: the task's own missing split when ``source`` (its
    dataset_kwargs) is known, else every few-shot split of our tasks the mirror in force lacks."""
    if source is not None:
        found = {data.missing_fewshot(source)}
    else:
        found = {data.missing_fewshot(kw) for kw in task_data_specs().values()}
    missing = sorted(m for m in found if m)
    where = "; ".join(missing) or "the task's few-shot split is empty"
    if len(missing) > 1:
        where = f"the mirror lacks the split they come from (one of: {where})"
    return (
        f"{n}-shot needs few-shot examples, but {where}. Run this task 0-shot, point "
        f"{data.ENV_VAR} at a mirror that has the split, or unset {data.ENV_VAR} to use the hub."
    )


UNUSABLE = ("ERROR", "UNUSABLE")


@dataclass
class Report:
    root: Path
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # task, status, detail
    named: bool = False  # the tasks were named (--tasks), not every task of the suite

    @property
    def ok(self) -> bool:
        """No data is missing or broken, and every task named can run. Of the whole suite, a
        few-shot variant the mirror cannot feed is reported but not a failure: `slm-suite run`
        skips it in its group and says so."""
        return not [t for t, status, _ in self.rows if status == "ERROR" or (self.named and status in UNUSABLE)]

    @property
    def unusable(self) -> list[str]:
        return [t for t, status, _ in self.rows if status in UNUSABLE]

    def text(self) -> str:
        width = max((len(t) for t, _, _ in self.rows), default=4)
        lines = [f"mirror: {self.root}"]
        lines += [f"  {t:<{width}}  {s:<8} {d}" for t, s, d in self.rows]
        bad = self.unusable
        zero = sum(s == "0-SHOT" for _, s, _ in self.rows)
        lines.append(
            f"{len(self.rows)} tasks: {len(self.rows) - len(bad) - zero} ok, "
            f"{zero} 0-shot only, {len(bad)} unusable" + (f": {', '.join(bad)}" if bad else "")
        )
        if any(s == "UNUSABLE" for _, s, _ in self.rows):
            lines.append(
                "UNUSABLE: the task takes its few-shot examples from a split the mirror lacks; "
                "`slm-suite run` skips it (and its _lite variant) in a group, and stops with an "
                "error when it is named"
            )
        return "\n".join(lines)


def check(data_dir=None, tasks=None) -> Report:
    root = data.data_dir(data_dir)
    if root is None:
        raise SLMError(f"no mirror to check: pass --data-dir or set {data.ENV_VAR}")
    specs = _task_yaml()
    names = tasks or sorted(t for t in specs if not t.endswith("_lite"))
    unknown = [t for t in names if t not in specs]
    if unknown:
        raise SLMError(f"unknown task(s): {', '.join(unknown)}; `slm-suite tasks` lists them")
    report = Report(root, named=tasks is not None)
    for name in names:
        kw, shots = specs[name]
        try:
            data.mirror_files(root / kw["hub_id"], kw.get("hub_config"))
            data.load(**kw, slm_data_dir=str(root), task=name)
        except SLMError as exc:
            report.rows.append((name, "ERROR", str(exc)))
            continue
        source = dict(kw, slm_data_dir=str(root))
        if data.missing_fewshot(source) is None:
            report.rows.append((name, "OK", f"{kw['hub_id']} {kw.get('hub_config') or ''}".strip()))
        elif shots > 0:  # as the run decides (slm_tasks.fewshot.drop_unrunnable): no examples, no task
            report.rows.append((name, "UNUSABLE", missing_message(shots, source)))
        else:
            report.rows.append((name, "0-SHOT", f"no '{kw['fewshot_split']}' split: few-shot unavailable"))
    return report
