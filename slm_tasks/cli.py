"""`slm-suite`: run the suite, list tasks, check data, bench, build leaderboards, gate.

Every subcommand is a thin wrapper over a Python function; bad input is one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import subprocess
import sys
from typing import TYPE_CHECKING

from slm_tasks import __version__
from slm_tasks.errors import SLMError

if TYPE_CHECKING:
    from slm_tasks.results.cost_record import CostRecord

# Subcommands that live with their part of the package: module.add_parser(subparsers).
PLUGGED = {
    "bench": "slm_tasks.adapters.bench",
    "leaderboard": "slm_tasks.leaderboards.board_cli",
    "gate": "slm_tasks.leaderboards.gate_cli",
    "quant": "slm_tasks.quant_cli",
}


def _kv(text: str) -> dict:
    out = {}
    for part in filter(None, (text or "").split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise SLMError(f"--model-args: '{part}' is not key=value")
        out[key.strip()] = value.strip()
    return out


@contextlib.contextmanager
def git_hash_quietly():
    """lm-eval records the git hash of the working folder (``results["git_hash"]``) by running
    ``git describe --always`` with git's stderr on ours: outside a repository every run printed
    "fatal: not a git repository". For the run, the evaluator asks the same question with git's
    stderr discarded; a hash is kept where there is one, and lm-eval's own fallback (reading
    ``.git``) is kept. Replacing the one name the evaluator imported is the narrowest fix: no
    file descriptor is redirected, so nothing else that writes to stderr is silenced."""
    from lm_eval import evaluator
    from lm_eval.loggers.utils import get_commit_from_path

    def quiet() -> str | None:
        try:
            out = subprocess.check_output(["git", "describe", "--always"], stderr=subprocess.DEVNULL)
            return out.strip().decode()
        except (subprocess.CalledProcessError, FileNotFoundError):  # no repository, or no git
            return get_commit_from_path(os.getcwd())

    original = evaluator.get_git_commit_hash
    evaluator.get_git_commit_hash = quiet
    try:
        yield
    finally:
        evaluator.get_git_commit_hash = original


def cmd_run(args) -> int:
    from lm_eval.utils import make_table

    from slm_tasks.api import run
    from slm_tasks.leaderboards.spec import load_spec

    tasks = [t for t in args.tasks.split(",") if t]
    model_args = _kv(args.model_args)
    if args.no_store or args.store:
        model_args["store"] = "off" if args.no_store else args.store
    with git_hash_quietly():
        out = run(
            model=args.model,
            backend=args.backend,
            tasks=tasks,
            output_path=args.output_path,
            model_args=model_args,
            limit=args.limit,
            num_fewshot=args.num_fewshot,
            data_dir=args.data_dir,
            log_samples=not args.no_log_samples,
            leaderboard=not args.no_leaderboard,
            confirm_run_unsafe_code=args.confirm_run_unsafe_code,
            on_plan=lambda lines: print("\n".join(lines), flush=True),
            ray=args.ray,
            bench_runs=0 if args.no_bench else 3,
        )
    if not out.results:
        return 0
    print(make_table(out.results))
    if out.results.get("groups"):
        print(make_table(out.results, "groups"))
    spec = load_spec(out.spec)  # the one definition of the scores, as the board reads it
    _print_scores(spec.score(out.results))
    if spec.icl and spec.icl_tasks(set(out.results.get("results", {}))):
        from slm_tasks.results.icl_gain import format_gain_table, icl_gain

        metric, _, flt = spec.icl.metric.partition(",")
        print(f"{spec.icl.title}, metric {spec.icl.metric} (not part of the overall):")
        print(
            format_gain_table(
                icl_gain(out.results, out.samples, low=spec.icl.low, high=spec.icl.high, metric=metric, filter_name=flt)
            )
        )
    if out.cost is not None and out.cost.run:
        _print_cost(out.cost)
    for label, path in (("results", out.results_file), ("leaderboard", out.board_dir)):
        if path:
            print(f"{label}: {path}")
    for note in out.notes:
        print(note, file=sys.stderr)
    return 0


def _duration(seconds: float) -> str:
    if seconds < 0.1:
        return "< 0.1 s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _print_cost(cost: CostRecord) -> None:
    """The run's cost record in a few lines: the run, the cluster, the bench, the store."""
    run = cost.run
    print(format_cost(run))
    cluster = cost.cluster
    if cluster:
        print(
            f"cluster: {len(cluster['workers'])} workers on {cluster['nodes']} nodes for {cluster['wall_s']:.0f} s, "
            f"{cluster['machine_s']:.0f} machine-seconds ({cluster['busy_s']:.0f} of them computing)"
        )
    if cost.benched:
        med = {k: cost.bench_median(k) for k in ("ttft_ms", "tg_ms_per_token", "pp_tok_s")}
        if all(v is not None for v in med.values()):
            print(
                f"runtime ({cost.bench['protocol']}, model as stored, median of {cost.bench['runs']}): first token "
                f"{med['ttft_ms']:.0f} ms, decode {med['tg_ms_per_token']:.1f} ms/token, "
                f"prefill {med['pp_tok_s']:.0f} tok/s"
            )
        # the process's resident memory is left out here: in a run it holds the evaluation too
        for n, m in cost.bench_long_context().items():
            if None not in m.values():
                print(
                    f"  at {n} tokens (median of {m['runs']}): prefill {m['pp_tok_s']:.0f} tok/s, "
                    f"decode {m['tg_ms_per_token']:.1f} ms/token; KV cache {m['kv_mib']:.1f} MiB "
                    f"+ compute buffer {m['compute_mib']:.1f} MiB"
                )
    reused = run.get("reused_requests")
    if reused:
        stored = cost.run_figure("reused_stored_s")
        print(
            f"response store: {reused} of {reused + run['requests']} requests answered from it"
            + (f" (they took {stored:.1f} s when computed)" if stored else "")
        )


def format_cost(run_cost: dict) -> str:
    """One line of a run's ``slm-suite.cost/1`` run figures, with units and the precision
    they are worth; figures the run did not measure are left out, energy says why."""
    parts = []
    wall, prefill, decode = (run_cost.get(k) for k in ("wall_s", "prefill_tok_s", "decode_ms_per_token"))
    ttft, peak, energy = (run_cost.get(k) for k in ("ttft_ms", "peak_rss_bytes", "energy_j"))
    if wall is not None:
        parts.append(f"{_duration(wall)} wall")
    if prefill is not None:
        parts.append(f"prefill {prefill:,.0f} tok/s")
    if decode is not None:
        parts.append(f"decode {decode:.1f} ms/token")
    if ttft is not None:
        parts.append(f"first token {ttft:,.0f} ms")
    if peak is not None:
        parts.append("peak memory " + (f"{peak / 1e9:.2f} GB" if peak >= 1e9 else f"{peak / 1e6:.0f} MB"))
    if energy is not None:
        parts.append(f"energy {energy / 1000:.1f} kJ" if energy >= 10_000 else f"energy {energy:.1f} J")
    elif run_cost.get("energy_unavailable_reason"):
        parts.append(f"energy n/a ({run_cost['energy_unavailable_reason']})")
    return "cost: " + (", ".join(parts) if parts else "nothing measured")


def _print_scores(summary: dict) -> None:
    """The run's domain and overall scores as its board spec defines them (= the board's)."""
    print(
        f"scores (board spec '{summary['spec']}': domain = plain mean of its tasks, overall = plain "
        f"mean of the capability domains; the ICL gain is not part of it):"
    )
    for name, d in summary["domains"].items():
        print(f"  {name:<16} {d['value']:.4f}  ({len(d['tasks'])} of {d['declared']} tasks)")
    if summary["absent_domains"]:
        print(f"  not run: {', '.join(summary['absent_domains'])}")
    if summary["overall"] is None:
        print("overall: — (no task of a capability domain ran)")
    else:
        print(f"overall (plain mean of {len(summary['domains'])} capability domains): {summary['overall']:.4f}")


def cmd_tasks(args) -> int:
    from slm_tasks.api import task_manager

    tm = task_manager(include_defaults=False)
    groups = [g for g in tm.all_groups if g.startswith("slm_")]
    subtasks = [t for t in tm.all_subtasks if t.startswith("slm_")]
    print("groups:")
    for g in groups:
        print(f"  {g}")
    print("tasks:")
    for t in subtasks:
        print(f"  {t}")
    return 0


def cmd_data(args) -> int:
    from slm_tasks.datacheck import check

    report = check(args.data_dir, tasks=args.tasks.split(",") if args.tasks else None)
    print(report.text())
    return 0 if report.ok else 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slm-suite", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"slm-suite {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="show lm-eval's INFO logs")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="evaluate a model (default: SmolLM2-135M on llama.cpp, lite)")
    r.add_argument(
        "--model",
        default="smollm2-135m",
        help="a short name (smollm2-135m, gemma3-270m), a .gguf file, a checkpoint folder or a hub id "
        "in the local Hugging Face cache (default: %(default)s)",
    )
    r.add_argument("--backend", default="llamacpp", choices=["llamacpp", "vllm"])
    r.add_argument("--tasks", default="slm_suite_lite", help="comma-separated tasks/groups (default: %(default)s)")
    r.add_argument("--output-path", default="slm-results", help="results folder (default: %(default)s)")
    r.add_argument("--model-args", default="", help="extra backend args, e.g. n_threads=2,n_ctx=2048")
    r.add_argument("--limit", type=float, default=None, help="docs per task (smoke runs; boards reject it)")
    r.add_argument("--num-fewshot", type=int, default=None)
    r.add_argument("--data-dir", default=None, help="offline mirror root (default: $SLM_DATA_DIR, else the hub)")
    r.add_argument("--no-log-samples", action="store_true", help="skip per-doc sample files")
    r.add_argument("--no-leaderboard", action="store_true")
    r.add_argument(
        "--store",
        default=None,
        metavar="PATH",
        help="response store file: an interrupted run resumes from it, a repeated run reuses it "
        "(default: $SLM_SUITE_CACHE/responses.sqlite, see docs/store.md)",
    )
    r.add_argument("--no-store", action="store_true", help="compute every request, store nothing")
    r.add_argument(
        "--no-bench",
        action="store_true",
        help="skip the runtime bench of the model as stored that ends every llama.cpp run "
        "(10-40 s, plus prefill, decode and memory at each length of the long-context tasks "
        "run; the cost record then has no bench figures)",
    )
    r.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        metavar="ADDRESS",
        help="run the requests on a Ray cluster: its head's ADDRESS (host:port), auto (default: the "
        "cluster this machine belongs to) or local (start one here for this run); docs/cluster.md",
    )
    r.add_argument(
        "--confirm-run-unsafe-code",
        action="store_true",
        help="allow the coding tasks to execute model-written code (in the sandbox)",
    )
    r.set_defaults(func=cmd_run)

    t = sub.add_parser("tasks", help="list slm_suite tasks and groups")
    t.set_defaults(func=cmd_tasks)

    d = sub.add_parser(
        "data",
        help="check an offline mirror against the tasks (splits, checksums); exit 2 when a task cannot run on it",
    )
    d.add_argument("--data-dir", default=None, help="mirror root (default: $SLM_DATA_DIR)")
    d.add_argument("--tasks", default=None, help="comma-separated task names (default: all)")
    d.set_defaults(func=cmd_data)

    for name, module in PLUGGED.items():
        try:
            importlib.import_module(module).add_parser(sub)
        except ImportError as exc:
            missing = sub.add_parser(name, help=f"(unavailable: {exc})")
            missing.set_defaults(func=lambda a, e=exc: _unavailable(e))
    return p


def _unavailable(exc) -> int:
    raise SLMError(f"this subcommand is unavailable: {exc}")


def main(argv=None) -> int:
    from slm_tasks import activation

    activation.install()
    # what a run quiets is put back afterwards: main() is also called in process (tests, scripts)
    quiet = ("lm_eval", "slm_tasks.data", "slm_tasks.fewshot")
    levels = {name: logging.getLogger(name).level for name in quiet}
    tqdm_env = os.environ.get("TQDM_DISABLE")
    try:
        return _main(argv)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if tqdm_env is None:
            os.environ.pop("TQDM_DISABLE", None)


def _main(argv) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if not {"-v", "--verbose"} & set(words) and "vllm" not in words:
        # lm-eval draws a bar per task; only the run's own bar (disable=False) stays. tqdm
        # reads this when it is first imported, which building the parser does. (vLLM's
        # generate divides by a disabled bar's total: its runs keep lm-eval's bars.)
        os.environ.setdefault("TQDM_DISABLE", "1")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:  # lm-eval repeats notices and bars per task; -v shows them
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        if args.command in ("run", "data"):  # the header / the report says what the mirror lacks, once
            for name in ("slm_tasks.data", "slm_tasks.fewshot"):
                logging.getLogger(name).setLevel(logging.ERROR)
    from slm_tasks.adapters.store import exit_on_sigterm

    try:
        with exit_on_sigterm():  # SIGTERM unwinds like Ctrl-C: the response store keeps what was computed
            return int(args.func(args) or 0)
    except SLMError as exc:
        print(f"slm-suite: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit) and exc.code != 143:
            raise
        kept = (
            " What was computed is in the response store: the same command resumes from it."
            if getattr(args, "store", None) is not None or not getattr(args, "no_store", True)
            else ""
        )
        print(f"slm-suite: interrupted; no result file was written for this run.{kept}", file=sys.stderr)
        return 130 if isinstance(exc, KeyboardInterrupt) else 143


if __name__ == "__main__":
    sys.exit(main())
