"""``slm-suite quant MODEL``: which quantisation may ship.

From a source model (anything ``slm-llamacpp`` accepts, resolved by its one rule), make each
format with llama.cpp's own quantiser (``adapters/quantise.py``, cached by the source's
sha256 and the format), evaluate every format on a profile through the normal run
(``api.run``: the response store makes it resumable and a repeated sweep cheap; one progress
bar over the sweep), bench every format in a fresh process (``slm-suite bench``: the survey
protocol and llama-bench's, with spread and peak memory), compare each with the reference
(the most precise format of the sweep; ``leaderboards/quant_compare.py``), gate each under a
quantisation policy (``leaderboards/quant_gate.py``) and write one board
(``leaderboards/quant_board.py``).

Output folder (``--out``): ``runs/<FORMAT>/`` (lm-eval's results and samples, and
``sweep-run.json``, which says the run finished), ``bench/<FORMAT>.json`` (cost records),
``gate/<FORMAT>/`` (gate.md, gate.json, gate.junit.xml), and the board (quant.md,
quant.csv, quant.json, index.html).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from slm_tasks.errors import SLMError
from slm_tasks.leaderboards.outputs import OutputError
from slm_tasks.results.cost_record import SCHEMA as COST_SCHEMA

# The survey's formats (Lu et al. §4: FP16, Q8_0, Q6_K, Q5_K, Q4_K_M, Q3_K) plus Q4_0.
DEFAULT_FORMATS = ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q4_0")


def _profiles() -> tuple[dict[str, tuple[tuple[str, ...], str]], str]:
    """The packaged sweep profiles (leaderboards/quant_profiles.yaml): name -> (tasks, board
    spec), and the default's name."""
    raw = yaml.safe_load((resources.files("slm_tasks.leaderboards") / "quant_profiles.yaml").read_text("utf-8"))
    profiles: dict[str, tuple[tuple[str, ...], str]] = {}
    for name, p in raw["profiles"].items():
        base = profiles[p["extends"]][0] if p.get("extends") else ()
        profiles[name] = (tuple(base) + tuple(p["tasks"]), p["spec"])
    return profiles, raw["default"]


PROFILES, DEFAULT_PROFILE = _profiles()
RUN_MARKER = "sweep-run.json"


@dataclass
class FormatRun:
    """One format of the sweep and what was measured of it."""

    format: str
    path: Path
    sha256: str
    quantise_s: float  # 0.0: the cached copy was reused
    results_file: Path | None = None
    reused: bool = False  # the finished run of an earlier sweep was reused
    bench: dict | None = None
    bench_reused: bool = False
    verdict: str | None = None
    exit_code: int | None = None
    quality: dict = field(default_factory=dict)

    @property
    def file_bytes(self) -> int:
        return self.path.stat().st_size


def formats_of(names) -> list[str]:
    """Canonical format names, each once, most precise first; an unknown one fails here."""
    from slm_tasks.adapters.quantise import by_precision, format_name

    return by_precision(dict.fromkeys(format_name(n) for n in names))


def profile_of(name: str) -> tuple[tuple[str, ...], str]:
    if name not in PROFILES:
        raise SLMError(f"unknown sweep profile '{name}': use one of {', '.join(PROFILES)}, or name --tasks")
    return PROFILES[name]


def working_source(model: str, threads: int | None) -> tuple[object, Path, str]:
    """(the source's ModelSpec, the file the formats are made from, what the sweep started
    from in words). A file stored at 16 or 32 bits is used as it is; a quantised one through its
    dequantised F16 copy (the most precise file it allows: its weights, rounded once)."""
    from slm_tasks.adapters.dequantise import dequantised_copy
    from slm_tasks.adapters.llamacpp import LlamaCppLM
    from slm_tasks.adapters.quantise import UNQUANTISED, stored_format

    args = {"model": model, "dequantise": "stored", **({"n_threads": threads} if threads else {})}
    spec = LlamaCppLM.resolve(args)
    stored = stored_format(spec.path)
    # a path is named by its file name: the board publishes no local paths
    named = spec.requested if spec.requested == spec.base_name else Path(spec.requested).name
    if stored in UNQUANTISED:
        return spec, spec.path, f"{named} as stored ({stored}, sha256 {spec.sha256[:12]})"
    f16 = dequantised_copy(None, spec.path, "f16")
    return (
        spec,
        f16,
        (
            f"{named}, stored as {stored or 'a quantised format'} (sha256 {spec.sha256[:12]}): "
            "every format is made from its dequantised F16 copy, so no format is more precise than "
            "the stored weights"
        ),
    )


def make_formats(source: Path, formats: list[str], threads: int | None) -> list[FormatRun]:
    from slm_tasks.adapters.quantise import quantise
    from slm_tasks.adapters.store_keys import model_identity

    runs = []
    for f in formats:
        path, seconds = quantise(source, f, threads=threads)
        runs.append(FormatRun(f, path, model_identity(path), seconds))
    return runs


def _finished_run(folder: Path, r: FormatRun, tasks, limit) -> Path | None:
    """The results file of an earlier sweep's finished run of this very file and profile."""
    try:
        done = json.loads((folder / RUN_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    results = folder / str(done.get("results_file", ""))
    same = done.get("sha256") == r.sha256 and done.get("tasks") == list(tasks) and done.get("limit") == limit
    return results if same and results.is_file() else None


def evaluate_formats(
    runs: list[FormatRun],
    tasks,
    out: Path,
    limit=None,
    data_dir=None,
    threads=None,
    store=None,
    progress: bool = True,
    after_format: Callable[[FormatRun], None] | None = None,
) -> None:
    """Every format evaluated through ``api.run`` (its own folder under ``out/runs``), under one
    progress bar for the sweep; a format whose run an earlier sweep finished is not run again."""
    from slm_tasks import api, run_plan
    from slm_tasks.adapters import progress as run_progress
    from slm_tasks.cli import git_hash_quietly

    todo = []
    for r in runs:
        done = _finished_run(out / "runs" / r.format, r, tasks, limit)
        if done is not None:
            r.results_file, r.reused = done, True
        else:
            todo.append(r)
    if not todo:
        return
    tm = api.task_manager(tasks=tasks, metadata={"slm_data_dir": str(data_dir)} if data_dir else None)
    per_format = run_plan.count(run_plan.preload(tm, tasks), limit).requests
    totals = {kind: n * len(todo) for kind, n in per_format.items()}
    margs = {"dequantise": "stored"}  # each format computes in its own kernels
    if threads:
        margs["n_threads"] = threads
    if store is not None:
        margs["store"] = store
    with run_progress.planned(totals, disable=not progress) as bar:
        # one bar over the sweep: each format's run shrinks only its own share of the plan
        bar.reserved = {kind: n * (len(todo) - 1) for kind, n in per_format.items()}
        for i, r in enumerate(todo):
            if i:
                bar.release(per_format)
            folder = out / "runs" / r.format
            with git_hash_quietly():
                res = api.run(
                    model=str(r.path),
                    tasks=list(tasks),
                    output_path=folder,
                    model_args=margs,
                    limit=limit,
                    data_dir=data_dir,
                    leaderboard=False,
                    bench_runs=0,  # benched below, in a process of its own
                )
            r.results_file = res.results_file
            marker = {"sha256": r.sha256, "tasks": list(tasks), "limit": limit}
            marker["results_file"] = str(res.results_file.relative_to(folder))
            _write_json(folder / RUN_MARKER, marker)
            if after_format is not None:
                after_format(r)


def bench_formats(runs: list[FormatRun], out: Path, bench_runs: int, threads: int | None) -> None:
    """``slm-suite bench`` of every format, each in a fresh process (its peak memory is then
    the model's, not the sweep's); a record of the same file, runs and threads is reused."""
    for r in runs:
        path = out / "bench" / f"{r.format}.json"
        old = _read_json(path)
        if (
            old
            and old.get("model", {}).get("sha256") == r.sha256
            and old.get("bench", {}).get("runs") == bench_runs
            and (threads is None or old.get("bench", {}).get("n_threads") == threads)
        ):
            r.bench, r.bench_reused = old, True
            continue
        if path.exists() and (old is None or old.get("schema") != COST_SCHEMA):
            # the bench writes its record here: a file it did not write is never replaced
            raise OutputError(f"{path} is not a bench record slm-suite wrote; move it away or choose another --out")
        path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "slm_tasks.adapters.bench", str(r.path), "--runs", str(bench_runs)]
        cmd += ["--pause", "1", "--no-progress", "-o", "json", "--record", str(path)]
        if threads:
            cmd += ["--threads", str(threads)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise SLMError(f"benching the {r.format} copy ({r.path}) failed: {tail}")
        r.bench = _read_json(path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict) -> None:
    from slm_tasks.run_output import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2) + "\n", fix="choose another --out")


def sweep(
    model: str,
    formats=DEFAULT_FORMATS,
    profile: str = DEFAULT_PROFILE,
    tasks=None,
    out: str | os.PathLike = "slm-quant",
    limit=None,
    data_dir=None,
    threads: int | None = None,
    store=None,
    bench_runs: int = 3,
    policy=None,
    progress: bool = True,
    after_format=None,
    say: Callable[[str], None] = lambda line: None,
):
    """The whole sweep; returns the board (a dict) and the formats' :class:`FormatRun` list."""
    from slm_tasks.leaderboards.quant_gate import load_quant_policy
    from slm_tasks.quant_report import report

    # every argument is judged before anything is made or run
    names = formats_of(formats)
    profile_tasks, spec_name = profile_of(profile)
    tasks = tuple(tasks) if tasks else profile_tasks
    policy = load_quant_policy(policy)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SLMError(f"--out {out} is a file, not a folder; choose another --out")
    t0 = time.perf_counter()
    spec, source, origin = working_source(model, threads)
    say(f"source: {origin}")
    runs = make_formats(source, names, threads)
    made = [r for r in runs if r.quantise_s]
    say(
        f"formats: {', '.join(names)} (reference {names[0]}); quantised {len(made)} in "
        f"{sum(r.quantise_s for r in made):.1f} s, {len(runs) - len(made)} from the cache"
    )
    evaluate_formats(runs, tasks, out, limit, data_dir, threads, store, progress, after_format)
    if bench_runs > 0:
        say(f"bench: {bench_runs} runs per protocol per format, each format in its own process")
        bench_formats(runs, out, bench_runs, threads)
    board = report(
        runs,
        model=spec.base_name,
        origin=origin,
        profile=profile if not tasks or tuple(tasks) == profile_tasks else "custom",
        tasks=tasks,
        spec_name=spec_name,
        out=out,
        policy=policy,
        allow_limit=limit is not None,
    )
    board["wall_s"] = time.perf_counter() - t0
    return board, runs
