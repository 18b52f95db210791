"""`slm-suite leaderboard <results...> --spec <name|yaml> --out <dir>`."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "leaderboard",
        help="build a leaderboard (json, csv, md, html) from lm-eval result files",
        description="Join lm-eval result files (files, folders or globs, from any number of machines) "
        "into one board: scores with intervals per task, domain and overall, cost columns, "
        "Pareto plots. Only the board's own files in --out are replaced; a re-run of a model and "
        "task shows the newest run. Exit 2 on invalid input or a failed write; the previous "
        "board is then left intact.",
    )
    p.add_argument("inputs", nargs="+", help="results_*.json files, folders (searched recursively) or globs")
    p.add_argument(
        "--spec",
        default="default",
        help="board spec: a YAML path or a packaged name (default, lite) (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        default="leaderboard",
        help="output folder; only the board's files in it are written, nothing else there is "
        "touched (default: %(default)s)",
    )
    p.add_argument(
        "--allow-limit", action="store_true", help="accept --limit runs (a smoke board, marked not for publication)"
    )
    p.add_argument("--no-html", action="store_true", help="skip index.html")
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse re-runs (the same model and task in several files) instead of showing the newest",
    )
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from slm_tasks.leaderboards.api import BOARD_FILES, build

    out = build(
        args.inputs,
        spec=args.spec,
        out=args.out,
        allow_limit=True if args.allow_limit else None,
        html=not args.no_html,
        strict=args.strict,
    )
    print(f"leaderboard: {out}")
    for name in BOARD_FILES:
        if (out / name).exists():
            print(f"  {out / name}")
    return 0
