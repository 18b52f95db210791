"""Find and read lm-eval result files, their per-doc samples and slm-suite cost records.

lm-eval ``--output_path <dir>`` writes ``<dir>/<model>/results_<time>.json`` and, with
``--log_samples``, ``samples_<task>_<time>.jsonl`` beside it. ``slm-suite run`` adds the cost
cost record is read by :mod:`slm_tasks.results.cost_record` (stored in ``results["config"]``;
earlier versions also wrote a ``results_<time>.cost.json`` sidecar, still read).
Samples files are read by :mod:`slm_tasks.results.samples`; every file is opened through
:mod:`slm_tasks.results.inputs` (regular files only, bounded sizes).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slm_tasks.results.cost_record import SIDECAR_SUFFIX, CostRecord, record_of_results
from slm_tasks.results.errors import BoardError
from slm_tasks.results.inputs import glob_entries, problem, read_json, walk
from slm_tasks.results.samples import DocScores, read_samples


@dataclass
class TaskRun:
    """One task's entry in one results file."""

    name: str
    scores: dict[str, Any]  # results[task]: "acc,none", "acc_stderr,none", ...
    config: dict[str, Any]
    version: Any
    n_shot: Any
    task_hash: str | None
    higher_is_better: dict[str, bool]
    n_samples: dict[str, Any]
    samples_path: Path | None
    # why a samples file of this task that is present cannot be read (then samples_path is None)
    samples_problem: str | None = None
    _samples: dict[str, DocScores] | None = field(default=None, repr=False)

    @property
    def split(self) -> str | None:
        kw = self.config.get("dataset_kwargs") or {}
        return self.config.get("test_split") or self.config.get("validation_split") or kw.get("eval_split")

    @property
    def dataset(self) -> dict[str, Any]:
        """What identifies the data: the loader's kwargs, or lm-eval's dataset_path/name."""
        kw = dict(self.config.get("dataset_kwargs") or {})
        for key in ("dataset_path", "dataset_name"):
            if self.config.get(key) is not None:
                kw[key] = self.config[key]
        return kw

    @property
    def output_type(self) -> str | None:
        return self.config.get("output_type")

    def value(self, metric_key: str) -> float | None:
        v = self.scores.get(metric_key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    def stderr(self, metric_key: str) -> float | None:
        metric, _, flt = metric_key.partition(",")
        v = self.scores.get(f"{metric}_stderr,{flt}")
        # lm-eval writes "N/A" when it could not bootstrap a stderr
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    def samples(self, flt: str = "none") -> DocScores | None:
        """Per-doc outcomes for one filter, or None without a samples file."""
        by_filter = self.all_samples()
        return None if by_filter is None else by_filter.get(flt)

    def all_samples(self) -> dict[str, DocScores] | None:
        """Per-doc outcomes of every filter, or None without a samples file."""
        if self.samples_path is None:
            return None
        if self._samples is None:
            self._samples = read_samples(self.samples_path)
        return self._samples


@dataclass
class Run:
    """One lm-eval results file with what belongs to it."""

    path: Path
    results: dict[str, Any]
    tasks: dict[str, TaskRun]
    cost: CostRecord | None
    cost_source: str | None  # "results config" | "sidecar <file>" | None
    notes: list[str] = field(default_factory=list)  # inputs skipped while reading it, named

    @property
    def config(self) -> dict[str, Any]:
        return self.results.get("config") or {}

    @property
    def limit(self):
        return self.config.get("limit")

    @property
    def model(self) -> str:
        """Row label. A run of ours: its cost record's ``model.name`` (the name the backend
        resolved once, :mod:`slm_tasks.adapters.model_spec`). Any other run: the name lm-eval
        gave it (``model_name``, which lm-eval takes from the model_args' peft, delta,
        pretrained, model, path or engine), else its folder's name (lm-eval names the folder
        after the model)."""
        name = self.cost.model_name if self.cost else None
        return str(name or self.results.get("model_name") or self.path.parent.name)

    @property
    def eval_wall_s(self) -> float | None:
        try:
            return float(self.results.get("total_evaluation_time_seconds"))
        except (TypeError, ValueError):
            return None


def discover(inputs: Iterable[str | Path]) -> list[Path]:
    """Result files named by files, folders (searched recursively) or glob patterns.

    Folders are walked without entering one twice (link loops); an entry named like a results
    file that is not a regular file (a FIFO, a device, a dangling link) is kept, so that
    :func:`load_run` refuses it by name instead of it being dropped without a word."""
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        if any(ch in text for ch in "*?["):
            files = []
            for m in glob_entries(text):
                # a broad pattern (**/*.json) also meets samples, cost sidecars and boards
                files.extend(_results_in(m) if m.is_dir() else [m] if _is_results_name(m) else [])
            if not files:
                raise BoardError(f"{text}: the pattern matches no lm-eval result file (results_*.json)")
            found.extend(files)
            continue
        path = Path(text)
        if path.is_dir():
            files = _results_in(path)
            if not files:
                raise BoardError(
                    f"{path}: no lm-eval result files (results_*.json) in this folder; "
                    f"pass the --output_path folder of an lm_eval run"
                )
            found.extend(files)
        elif os.path.lexists(path):
            found.append(path)  # a file, or something load_run refuses by name
        else:
            raise BoardError(f"{path}: no such file or folder")
    unique = []
    seen = set()
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _is_results_name(p: Path) -> bool:
    return p.name.startswith("results_") and p.suffix == ".json" and not p.name.endswith(SIDECAR_SUFFIX)


def _results_in(folder: Path) -> list[Path]:
    return sorted(p for p in walk(folder) if _is_results_name(p))


def load_run(path: Path) -> Run:
    """Read one results file (+ its samples and cost record); raise BoardError if malformed."""
    path = Path(path)
    data = read_json(path, "lm-eval results file")
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise BoardError(
            f"{path}: not an lm-eval results file (no 'results' object); "
            f"pass the results_<time>.json that lm_eval --output_path writes"
        )
    configs = data.get("configs")
    if not isinstance(configs, dict):
        raise BoardError(f"{path}: lm-eval results file without 'configs'; written by lm-eval < 0.4?")
    stamp = path.stem[len("results_") :] if path.stem.startswith("results_") else None
    tasks = {}
    notes = []
    for name, cfg in configs.items():
        scores = data["results"].get(name)
        if not isinstance(scores, dict) or not isinstance(cfg, dict):
            raise BoardError(f"{path}: task '{name}' has a config but no results entry; the file is incomplete")
        samples = path.parent / f"samples_{name}_{stamp}.jsonl" if stamp else None
        unreadable = None
        if samples is not None and os.path.lexists(samples):
            unreadable = problem(samples)
            if unreadable:
                # named by its folder and file: notes are published, the machine's paths are not
                notes.append(
                    f"{samples.parent.name}/{samples.name}: samples file skipped ({unreadable}); "
                    f"task {name} is shown without per-document values"
                )
        else:
            samples = None
        tasks[name] = TaskRun(
            name=name,
            scores=scores,
            config=cfg,
            version=(data.get("versions") or {}).get(name),
            n_shot=(data.get("n-shot") or {}).get(name),
            task_hash=(data.get("task_hashes") or {}).get(name),
            higher_is_better=(data.get("higher_is_better") or {}).get(name) or {},
            n_samples=(data.get("n-samples") or {}).get(name) or {},
            samples_path=None if samples is None or unreadable else samples,
            samples_problem=unreadable and f"{samples} is {unreadable}",
        )
    cost, source = record_of_results(data, path)
    return Run(path=path, results=data, tasks=tasks, cost=cost, cost_source=source, notes=notes)


def load_runs(inputs: Iterable[str | Path]) -> list[Run]:
    paths = discover(inputs)
    if not paths:
        raise BoardError("no result files given")
    return [load_run(p) for p in paths]
