"""How precise is a lite run? Per-task and per-domain sampling error from one lite run.

Reads a ``slm_suite_lite`` run's lm-eval output (``results_*.json`` and the
``samples_*.jsonl`` next to it, i.e. a run with ``--log_samples``; ``slm-suite run`` logs
them) and the full split sizes (lm-eval's own task loading, hub or mirror), and prints:

* per lite task: the score, its standard error as an estimate of the full-split score
  (``slm_tasks.lite_analysis.estimate_from_lite``: finite-population corrected, variance
  from the lite documents themselves), the 95 % half-width and the unpaired detectable
  difference; the domain means (plain means of their tasks);
* per ICL task: the paired 0->5-shot gain on the same lite documents
  (``slm_tasks.icl.icl_gain``) and the 0-vs-5-shot discordance.

    SLM_DATA_DIR=../shared/hub python benchmarks/lite_precision.py slm-results/smollm2-135m/results_<date>.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# metric and filter each kind of task reports as its score (the domain groups' choice)
SCORE_KEYS = (("acc", "none"), ("exact_match", "strict-match"), ("pass@1", "create_test"))


def load_samples(results_file: Path) -> dict[str, list[dict]]:
    stamp = results_file.stem.removeprefix("results_")
    out = {}
    for f in results_file.parent.glob(f"samples_*_{stamp}.jsonl"):
        task = f.name.removeprefix("samples_").removesuffix(f"_{stamp}.jsonl")
        out[task] = [json.loads(line) for line in f.open()]
    return out


def per_doc(rows: list[dict]) -> tuple[str, list[float]] | None:
    for metric, filt in SCORE_KEYS:
        picked = [r for r in rows if metric in r and r.get("filter", "none") == filt]
        if picked:
            return f"{metric},{filt}", [float(r[metric]) for r in sorted(picked, key=lambda r: r["doc_id"])]
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    args = ap.parse_args(argv)

    from slm_tasks import icl
    from slm_tasks import lite_analysis as la
    from slm_tasks.api import DOMAINS, task_manager

    results = json.loads(args.results.read_text())
    samples = load_samples(args.results)
    if not samples:
        raise SystemExit(f"no samples_*.jsonl next to {args.results}: run with --log_samples")
    full = task_manager(tasks=["slm_suite"]).load(["slm_suite"])
    sizes = {name: len(t.eval_docs) for name, t in full["tasks"].items()}
    # domains as the suite's own groups define them
    domains = {g.removeprefix("slm_").replace("_", " "): [t.removeprefix("slm_") for t in full["group_map"][g]]
               for g in DOMAINS}

    estimates, metrics = [], {}
    for task in sorted(samples):
        base = task.removesuffix("_lite")
        if task.startswith("slm_icl_") or base not in sizes:
            continue
        found = per_doc(samples[task])
        if not found:
            continue
        metrics[base], scores = found
        estimates.append(la.estimate_from_lite(scores, sizes[base], task=base.removeprefix("slm_")))
    print(f"lite run {args.results.name}: sampling error of each lite score as an estimate of the full-split score\n")
    print(la.estimate_table(estimates, domains))
    print("\nmetric per task: " + ", ".join(f"{t.removeprefix('slm_')} {m}" for t, m in sorted(metrics.items())))

    icl_samples = {t: rows for t, rows in samples.items() if t.startswith("slm_icl_")}
    if icl_samples:
        gain = icl.icl_gain(results, icl_samples)
        print("\n| ICL task (lite, acc) | 0-shot | 5-shot | gain | 95% CI | CI from | 0-vs-5 discordance |")
        print("|---|---:|---:|---:|---|---|---:|")
        rows = sorted(gain["tasks"].items()) + ([("**mean**", gain["mean"])] if gain.get("mean") else [])
        for name, g in rows:
            ci = g.ci95
            base = name.removesuffix(" (lite)")
            print(f"| {name} | {g.low:.3f} | {g.high:.3f} | {g.gain:+.3f} | "
                  f"{'' if ci is None else f'[{ci[0]:+.3f}, {ci[1]:+.3f}]'} | {g.method} | "
                  f"{_f(discordance(icl_samples, base))} |")
        for base, why in (gain.get("skipped") or {}).items():
            print(f"\n{base}: {why}")
    return 0


def discordance(samples: dict, base: str) -> float | None:
    """Share of lite docs on which exactly one of 0-shot and 5-shot is right."""
    a = samples.get(f"slm_icl_{base}_0shot_lite")
    b = samples.get(f"slm_icl_{base}_5shot_lite")
    if not a or not b:
        return None
    acc0 = {r["doc_id"]: r["acc"] for r in a}
    both = [(acc0[r["doc_id"]], r["acc"]) for r in b if r["doc_id"] in acc0]
    return sum(x != y for x, y in both) / len(both) if both else None


def _f(x) -> str:
    return "" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    sys.exit(main())
