"""`slm-suite gate --baseline <run> --candidate <run> --policy <gate.yaml>`: exit 0 pass, 1 fail, 2 invalid."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "gate",
        help="decide whether a candidate model run may replace the baseline (exit 0 pass, 1 fail, 2 invalid)",
        description="Paired per-document tests (exact McNemar / paired bootstrap, Holm-corrected) with "
                    "non-inferiority margins, plus cost budgets, from a gate policy YAML.",
    )
    p.add_argument("--baseline", required=True, nargs="+", help="the baseline's results file(s) or folder")
    p.add_argument("--candidate", required=True, nargs="+", help="the candidate's results file(s) or folder")
    p.add_argument("--policy", default=None,
                   help="gate policy YAML (example: leaderboards/gate.yaml, or the packaged name 'gate')")
    p.add_argument("--out", default=None, help="folder for gate.md, gate.json and gate.junit.xml")
    p.add_argument("--quiet", action="store_true", help="print only the verdict line")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from slm_tasks.leaderboards.release_gate import run_gate

    result = run_gate(args.baseline, args.candidate, args.policy or "gate", out=args.out)
    if args.quiet:
        print(f"gate {'passed' if result.passed else 'failed'}: {len(result.failures)} of "
              f"{len(result.checks)} checks failed")
    else:
        sys.stdout.write(result.to_markdown())
    if args.out:
        print(f"reports: {args.out}/gate.md, gate.json, gate.junit.xml", file=sys.stderr)
    return result.exit_code
