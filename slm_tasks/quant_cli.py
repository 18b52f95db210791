"""``slm-suite quant MODEL``: the quantisation sweep's command line (the work is in
``slm_tasks/quant_sweep.py``)."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    from slm_tasks.quant_sweep import DEFAULT_FORMATS, DEFAULT_PROFILE, PROFILES

    p = subparsers.add_parser(
        "quant",
        help="quantisation sweep: make each format with llama.cpp, evaluate, bench, compare and gate",
        description="Make each format of MODEL with llama.cpp's quantiser, evaluate every format on a "
        "profile, bench it, compare it with the most precise format and gate it (docs/quantisation.md). "
        "Exit code: 0 every format passed, 1 one failed, 3 one not shown (--gate FORMAT: that "
        "format's own), 2 invalid input.",
    )
    p.add_argument("model", help="a .gguf path or a short name (smollm2-135m, gemma3-270m)")
    p.add_argument(
        "--formats",
        default=",".join(DEFAULT_FORMATS),
        help="comma-separated llama.cpp formats (default: %(default)s)",
    )
    p.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        choices=sorted(PROFILES),
        help="the tasks every format is evaluated on (default: %(default)s, the lite board's multiple-choice tasks)",
    )
    p.add_argument("--tasks", default=None, help="comma-separated tasks instead of the profile's")
    p.add_argument("--out", default="slm-quant", help="output folder (default: %(default)s)")
    p.add_argument("--policy", default=None, help="quantisation policy YAML (default: the packaged quant_policy)")
    p.add_argument("--gate", default=None, metavar="FORMAT", help="exit with this format's gate verdict")
    p.add_argument("--limit", type=float, default=None, help="docs per task (smoke sweeps; no format can pass)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all usable cores)")
    p.add_argument("--bench-runs", type=int, default=3, help="bench runs per protocol and format (0: no bench)")
    p.add_argument("--data-dir", default=None, help="offline mirror root (default: $SLM_DATA_DIR)")
    p.add_argument("--store", default=None, metavar="PATH", help="response store file (default: the usual one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from slm_tasks.adapters.quantise import format_name
    from slm_tasks.quant_report import exit_code
    from slm_tasks.quant_sweep import sweep

    formats = [f for f in args.formats.split(",") if f.strip()]
    gate = format_name(args.gate) if args.gate else None
    if gate is not None and gate not in [format_name(f) for f in formats]:
        raise_error(f"--gate {args.gate}: that format is not in --formats ({args.formats})")
    board, runs = sweep(
        args.model,
        formats=formats,
        profile=args.profile,
        tasks=[t for t in args.tasks.split(",") if t] if args.tasks else None,
        out=args.out,
        limit=args.limit,
        data_dir=args.data_dir,
        threads=args.threads,
        store=args.store,
        bench_runs=args.bench_runs,
        policy=args.policy,
        progress=not args.no_progress,
        say=lambda line: print(line, file=sys.stderr, flush=True),
    )
    from slm_tasks.leaderboards.quant_board import to_markdown

    print(to_markdown(board))
    reused = sum(r.reused for r in runs)
    if reused:
        print(
            f"{reused} of {len(runs)} formats' runs reused from {args.out} (finished earlier)",
            file=sys.stderr,
        )
    print(f"board: {args.out}/quant.md, index.html; gate reports: {args.out}/gate/<FORMAT>/", file=sys.stderr)
    return exit_code(runs, gate)


def raise_error(message: str):
    from slm_tasks.errors import SLMError

    raise SLMError(message)
