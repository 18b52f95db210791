"""`slm-suite gate --baseline <run> --candidate <run> --policy <gate.yaml>`:
exit 0 passed, 1 failed, 2 invalid input, 3 not shown."""

from __future__ import annotations

import argparse
import sys

EXIT_CODES = (
    "exit codes: 0 passed (every check shown within its bound); 1 failed (a regression beyond the "
    "margin or a budget overrun shown); 2 invalid input; 3 not shown (too few documents or runs, a "
    "spread too wide, or a --limit smoke comparison: the gate cannot tell, treat it as not passed)"
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "gate",
        help="decide whether a candidate model run may replace the baseline "
        "(exit 0 passed, 1 failed, 2 invalid, 3 not shown)",
        description="Paired per-document tests (exact McNemar / paired bootstrap, Holm-corrected) with "
        "non-inferiority margins, plus cost budgets judged against the runs' spread, from a gate "
        "policy YAML. A check passes only when shown within its bound, fails when shown beyond "
        "it, and is otherwise 'not shown'.",
        epilog=EXIT_CODES,
    )
    p.add_argument("--baseline", required=True, nargs="+", help="the baseline's results file(s) or folder")
    p.add_argument("--candidate", required=True, nargs="+", help="the candidate's results file(s) or folder")
    p.add_argument(
        "--policy", default=None, help="gate policy YAML (example: leaderboards/gate.yaml, or the packaged name 'gate')"
    )
    p.add_argument(
        "--allow-limit",
        action="store_true",
        help="accept --limit runs as a smoke comparison (overrides the policy's allow_limit); "
        "it can fail, never pass: at best exit 3",
    )
    p.add_argument("--out", default=None, help="folder for gate.md, gate.json and gate.junit.xml")
    p.add_argument("--quiet", action="store_true", help="print only the verdict line")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from slm_tasks.leaderboards.release_gate import run_gate

    result = run_gate(
        args.baseline,
        args.candidate,
        args.policy or "gate",
        out=args.out,
        allow_limit=True if args.allow_limit else None,
    )
    if args.quiet:
        print(f"gate {result.verdict}: {result.reason} (exit code {result.exit_code})")
    else:
        sys.stdout.write(result.to_markdown())
    if args.out:
        print(f"reports: {args.out}/gate.md, gate.json, gate.junit.xml", file=sys.stderr)
    return result.exit_code
