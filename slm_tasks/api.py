"""Python API: a ready TaskManager, simple_evaluate with our tasks, and the one-command run.

from slm_tasks.api import evaluate
results = evaluate("slm-llamacpp", "model=smollm2-135m", tasks=["slm_suite_lite"])
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slm_tasks.errors import SLMError
from slm_tasks.results.cost_record import SIDECAR_SUFFIX, CostRecord, record_of_results

log = logging.getLogger(__name__)

BACKENDS = {"llamacpp": "slm-llamacpp", "vllm": "slm-vllm"}
DEFAULT_MODEL = "smollm2-135m"
DEFAULT_TASKS = ("slm_suite_lite",)


def task_manager(include_defaults: bool | None = None, tasks=None, metadata: dict | None = None):
    """A TaskManager that knows the slm tasks.

    Indexing lm-eval's ~15k built-in tasks takes seconds; when every requested name is
    ours (``slm_*``) only our folder is indexed.
    """
    from slm_tasks import activation
    from slm_tasks.paths import task_dir

    activation.install()
    from lm_eval.tasks import TaskManager

    if include_defaults is None:
        include_defaults = not tasks or not all(str(t).startswith("slm_") for t in tasks)
    # without lm-eval's own tasks, name our folder: the activation hook adds it only beside them
    ours = None if include_defaults else str(task_dir())
    return TaskManager(include_defaults=include_defaults, include_path=ours, metadata=metadata)


def evaluate(model, model_args=None, tasks=DEFAULT_TASKS, data_dir: str | None = None, on_plan=None, **kwargs):
    """``lm_eval.simple_evaluate`` with the slm tasks available and the mirror in force.

    ``on_plan(lines)``: when given (``model`` one of ours, ``model_args`` a dict), the tasks
    are loaded first and counted, ``on_plan`` gets the run's header lines, and the backend
    reports into one progress bar for the run."""
    from lm_eval import simple_evaluate

    tasks = list(tasks)
    # every model argument joins the tasks' metadata, as lm-eval's CLI does (the long-context
    # tasks count lengths in the model's tokens)
    margs = model_args if isinstance(model_args, dict) else _parse_args(model_args or "")
    metadata = {**margs, **dict(kwargs.pop("metadata", None) or {})}
    if data_dir:
        metadata["slm_data_dir"] = str(data_dir)
    tm = kwargs.pop("task_manager", None) or task_manager(tasks=tasks, metadata=metadata or None)
    unknown = [t for t in tasks if t not in tm.all_tasks]
    if unknown:
        raise SLMError(
            f"unknown task(s): {', '.join(unknown)}. `slm-suite tasks` lists ours; "
            f"built-in lm-eval tasks are listed by `lm_eval ls tasks`"
        )
    try:
        with _compiled_templates(), _planned_run(tm, tasks, model, model_args, data_dir, kwargs.get("limit"), on_plan):
            return simple_evaluate(
                model=model,
                model_args=model_args,
                tasks=tasks,
                task_manager=tm,
                metadata=metadata or None,
                **kwargs,
            )
    except ValueError as exc:
        if "marked as unsafe" not in str(exc):
            raise
        raise SLMError(
            f"{exc.args[0].split(':', 1)[1].split(' which')[0].strip()} executes model-written code: "
            "pass --confirm-run-unsafe-code (slm-suite runs it in its sandbox, docs/sandbox.md), "
            "or leave the coding tasks out"
        ) from None


@contextlib.contextmanager
def _compiled_templates():
    """lm-eval compiles a task's Jinja prompt template anew for every document and every use
    (``lm_eval.utils.apply_template``, lm-eval issue #1286): about a third of a lite run's time
    outside the model. For the run, its environment keeps each compiled template; the same
    environment compiles the same source, so every prompt is unchanged."""
    from lm_eval import utils

    env = utils.env
    if "from_string" in vars(env):  # already cached (a nested run)
        yield
        return
    compiled = functools.lru_cache(maxsize=4096)(env.from_string)
    env.from_string = lambda source, globals=None, template_class=None: (
        compiled(source)
        if globals is None and template_class is None and isinstance(source, str)
        else type(env).from_string(env, source, globals, template_class)
    )
    try:
        yield
    finally:
        del env.from_string


@contextlib.contextmanager
def _planned_run(tm, tasks, model, model_args, data_dir, limit, on_plan):
    if on_plan is None:
        yield
        return
    from slm_tasks import run_plan
    from slm_tasks.adapters import progress

    plan = run_plan.count(run_plan.preload(tm, tasks), limit)
    on_plan(run_plan.header(plan, resolve(model, model_args), data_dir))
    with progress.planned(plan.requests):
        yield


def resolve(backend: str, model_args: dict | str):
    """The :class:`~slm_tasks.adapters.model_spec.ModelSpec` of ``model_args`` (a dict, or
    lm-eval's ``k=v,...`` string) as the lm-eval model ``backend`` (slm-llamacpp, slm-vllm)
    will run it; a misspelt argument or a missing model file fails here, before anything
    loads. The backend built for the run reuses it. None for an lm-eval model of another kind,
    and on a cluster for a file this machine lacks (the workers resolve it)."""
    from lm_eval.api.registry import get_model
    from lm_eval.utils import simple_parse_args_string

    from slm_tasks import activation

    activation.install()
    args = simple_parse_args_string(model_args) if isinstance(model_args, str) else dict(model_args or {})
    model_class = get_model(backend)
    if not hasattr(model_class, "resolve"):  # another lm-eval model standing in (tests: `dummy`)
        return None
    from slm_tasks.adapters.models import ModelFileError

    try:
        return model_class.resolve(args)  # checks the arguments before the file
    except ModelFileError:
        if not args.get("ray"):
            raise
        return None  # on a cluster the workers read the file on their machines and name the one that cannot


@dataclass
class RunOutput:
    results: dict
    results_file: Path | None
    cost: CostRecord | None  # the run's cost record, stored in the results file (config.slm_cost)
    board_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    samples: dict | None = None
    spec: str = "default"  # the board spec the run's scores are defined by


def run(
    model: str = DEFAULT_MODEL,
    backend: str = "llamacpp",
    tasks=DEFAULT_TASKS,
    output_path: str | os.PathLike = "slm-results",
    model_args: dict | None = None,
    limit: float | None = None,
    num_fewshot: int | None = None,
    data_dir: str | None = None,
    log_samples: bool = True,
    leaderboard: bool = True,
    confirm_run_unsafe_code: bool = False,
    on_plan=None,
    bench_runs: int = 3,
    ray: str | None = None,
) -> RunOutput:
    """Evaluate, save lm-eval's result files (the cost record inside), and build a leaderboard.

    ``output_path`` must be a folder that can be written (else OutputError before the first
    request); the returned files are on disk, read back after saving (lm-eval's tracker only
    logs a failed save). The board in ``<output_path>/leaderboard`` replaces only its own files.

    ``on_plan(lines)`` receives the run's header before the first request (and the run gets
    one progress bar); ``bench_runs`` repetitions of the survey's runtime protocol on the
    model as stored (llama.cpp; 0 to skip) go into the cost record's ``bench``, so every
    board row has deployment figures beside the evaluation's own throughput. A run that
    computed nothing (every answer from the response store) reuses the bench of the newest
    cost record under ``output_path`` of the same model file, machine and threads, if any.

    ``ray``: run the requests on a Ray cluster (its address, ``auto`` or ``local``; see
    docs/cluster.md); the results are a single machine's."""
    from lm_eval.loggers import EvaluationTracker

    from slm_tasks import run_output

    if backend not in BACKENDS:
        raise SLMError(f"unknown backend '{backend}': choose one of {', '.join(BACKENDS)}")
    margs = {"model": model, **(model_args or {})}
    if ray:
        margs["ray"] = ray
    output_path = Path(output_path)
    # the model, resolved once: a misspelt model argument or a model file that is missing or
    # not a GGUF fails now, before the tasks are loaded and the header printed
    spec = resolve(BACKENDS[backend], margs)
    # a folder that cannot take the results fails now, not after the evaluation
    run_output.check_before(output_path, margs, board=leaderboard)
    tracker = EvaluationTracker(output_path=str(output_path))
    results = evaluate(
        BACKENDS[backend],
        margs,
        tasks=tasks,
        data_dir=data_dir,
        limit=limit,
        num_fewshot=num_fewshot,
        log_samples=log_samples,
        evaluation_tracker=tracker,
        confirm_run_unsafe_code=confirm_run_unsafe_code,
        on_plan=on_plan,
    )
    if results is None:  # non-zero rank in distributed runs
        return RunOutput({}, None, None)
    notes: list[str] = []
    cost, _ = record_of_results(results)
    # a cluster run's figures are its workers'; a bench here would measure the driver's machine
    if cost and backend == "llamacpp" and bench_runs > 0 and not cost.bench and not cost.cluster:
        # the bench goes into the record lm-eval's tracker saves with the results
        reused = run_output.reusable_bench(output_path, cost)
        if reused is not None:
            cost.raw["bench"], source = reused
            notes.append(
                f"runtime bench: every request came from the response store, so the bench of "
                f"{source} (same model file, machine and threads) is reused, not measured again"
            )
        else:
            from slm_tasks.adapters.bench import bench
            from slm_tasks.adapters.bench_long import domain_lengths

            # a run with long-context tasks also measures speed and memory at their lengths:
            # two runs each, since one prefill of 8,000 tokens takes most of a minute here
            lengths = domain_lengths(results.get("configs") or {})
            if lengths:
                print(
                    f"runtime bench of the model as stored: the survey's protocol, then prefill, decode "
                    f"and memory at {', '.join(map(str, lengths))} tokens (the long-context lengths run)",
                    file=sys.stderr,
                )
            cost.raw["bench"] = bench(
                spec.stored(),
                runs=bench_runs,
                pause_s=1.0,
                protocols=("survey", "long-context") if lengths else ("survey",),
                lengths=lengths,
                long_runs=min(bench_runs, 2),
                progress=False,
            )["bench"]
    samples = results.pop("samples", None) if log_samples else None
    results_file = run_output.save(tracker, results, samples)
    cost = CostRecord.from_json(cost.raw, results_file) if cost else None
    out = RunOutput(results, results_file, cost, samples=samples, spec=spec_for(tasks), notes=notes)
    if leaderboard:
        out.board_dir, note = _board(output_path, out.spec, limit)
        if note:
            out.notes.append(note)
    return out


def spec_for(tasks) -> str:
    """The packaged board spec that defines the scores of a run of ``tasks``."""
    return "lite" if any(str(t).endswith("_lite") for t in tasks) else "default"


def _board(output_path: Path, spec: str, limit) -> tuple[Path | None, str | None]:
    """A board of the newest run of every model under ``output_path`` (re-runs replace)."""
    from slm_tasks.leaderboards import build

    newest = []
    for folder in sorted(d for d in output_path.iterdir() if d.is_dir()):
        runs = [p for p in folder.glob("results_*.json") if not p.name.endswith(SIDECAR_SUFFIX)]
        if runs:
            newest.append(max(runs))
    board_dir = output_path / "leaderboard"
    build(newest, spec=spec, out=board_dir, allow_limit=limit is not None)
    note = "--limit run: the board is marked as a smoke board, not for publication" if limit else None
    return board_dir, note


def domain_summary(results: dict, spec: str | None = None) -> dict[str, Any]:
    """Domain scores and the overall score of one run, as the board spec defines them.

    ``spec``: a packaged board spec name or a path (default: :func:`spec_for` the run's
    tasks). The values equal the board's for this run; see
    :meth:`slm_tasks.leaderboards.spec.Spec.score` for the returned fields.
    """
    from slm_tasks.leaderboards.spec import load_spec

    return load_spec(spec or spec_for(results.get("results") or {})).score(results)


def _parse_args(text: str) -> dict[str, Any]:
    from lm_eval.utils import simple_parse_args_string

    return simple_parse_args_string(text) if text else {}
