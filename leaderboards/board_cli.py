"""`slm-suite leaderboard <results...> --spec <name|yaml> --out <dir>`."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "leaderboard",
        help="build a leaderboard (json, csv, md, html) from lm-eval result files",
        description="Join lm-eval result files (files, folders or globs, from any number of machines) "
                    "into one board: scores with intervals per task, domain and overall, cost columns, "
                    "Pareto plots. Exit 2 on invalid input; the previous board is then left intact.",
    )
    p.add_argument("inputs", nargs="+", help="results_*.json files, folders (searched recursively) or globs")
    p.add_argument("--spec", default="default",
                   help="board spec: a YAML path or a packaged name (default, lite) (default: %(default)s)")
    p.add_argument("--out", default="leaderboard", help="output folder (default: %(default)s)")
    p.add_argument("--allow-limit", action="store_true",
                   help="accept --limit runs (a smoke board, marked not for publication)")
    p.add_argument("--no-html", action="store_true", help="skip index.html")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from slm_tasks.leaderboards import build

    out = build(args.inputs, spec=args.spec, out=args.out,
                allow_limit=True if args.allow_limit else None, html=not args.no_html)
    print(f"leaderboard: {out}")
    for name in ("leaderboard.json", "leaderboard.csv", "leaderboard.md", "index.html"):
        if (out / name).exists():
            print(f"  {out / name}")
    return 0
