"""How precise is a lite run? Per-task and per-domain sampling error from one lite run.

Reads a ``slm_suite_lite`` run's lm-eval output (``results_*.json`` and the
``samples_*.jsonl`` next to it, i.e. a run with ``--log_samples``; ``slm-suite run`` logs
them) and the full split sizes (lm-eval's own task loading, hub or mirror), and prints:

* per lite task: the score, its standard error as an estimate of the full-split score
  (``lite_analysis.estimate_from_lite`` beside this file: finite-population corrected, variance
  from the lite documents themselves), the 95 % half-width and the unpaired detectable
  difference; the domain means (plain means of their tasks, domains and metrics as the lite
  board spec defines them, leaderboards/lite.yaml);
* per ICL task: the paired 0->5-shot gain on the same lite documents
  (``slm_tasks.results.icl_gain.icl_gain``) and the 0-vs-5-shot discordance.

    SLM_DATA_DIR=../shared/hub python benchmarks/lite_precision.py slm-results/smollm2-135m/results_<date>.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # lite_analysis.py, beside this file


def load_samples(results_file: Path) -> dict[str, dict]:
    """task -> its per-filter DocScores, from the samples files of this results file."""
    from slm_tasks.results.samples import read_samples, samples_files

    stamp = results_file.stem.removeprefix("results_")
    return {task: read_samples(p) for task, p in samples_files(results_file.parent, stamp=stamp).items()}


def spec_domains(spec) -> tuple[dict[str, list[str]], dict[str, object]]:
    """(domain -> its tasks without prefix and _lite, lite task -> its spec entry)."""
    domains, entries = {}, {}
    for d in spec.domains:
        for t in d.tasks:
            if t.task:
                domains.setdefault(d.name.replace("_", " "), []).append(
                    t.task.removesuffix("_lite").removeprefix("slm_")
                )
                entries[t.task] = t
    return domains, entries


def per_doc(by_filter: dict, entry) -> tuple[str, list[float]] | None:
    """The spec's metric of a task and its per-doc values in doc order, if the samples have it."""

    def values(metric):
        name, _, flt = metric.partition(",")
        ds = by_filter.get(flt)
        return None if ds is None else ds.by_doc(name)

    metric = entry.pick_metric(lambda m: values(m) is not None)
    if metric is None:
        return None
    got = values(metric)
    return metric, [got[i] for i in sorted(got)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    args = ap.parse_args(argv)

    import lite_analysis as la

    from slm_tasks.api import task_manager
    from slm_tasks.leaderboards.spec import load_spec
    from slm_tasks.results.icl_gain import icl_gain

    results = json.loads(args.results.read_text())
    samples = load_samples(args.results)
    if not samples:
        raise SystemExit(f"no samples_*.jsonl next to {args.results}: run with --log_samples")
    full = task_manager(tasks=["slm_suite"]).load(["slm_suite"])
    sizes = {name: len(t.eval_docs) for name, t in full["tasks"].items()}
    # domains, tasks and metrics as the one score definition (the lite board spec) has them
    domains, entries = spec_domains(load_spec("lite"))

    estimates, metrics = [], {}
    for task in sorted(samples):
        base = task.removesuffix("_lite")
        if task not in entries or base not in sizes:
            continue
        found = per_doc(samples[task], entries[task])
        if not found:
            continue
        metrics[base], scores = found
        estimates.append(la.estimate_from_lite(scores, sizes[base], task=base.removeprefix("slm_")))
    print(f"lite run {args.results.name}: sampling error of each lite score as an estimate of the full-split score\n")
    print(la.estimate_table(estimates, domains))
    print("\nmetric per task: " + ", ".join(f"{t.removeprefix('slm_')} {m}" for t, m in sorted(metrics.items())))

    icl_samples = {t: rows for t, rows in samples.items() if t.startswith("slm_icl_")}
    if icl_samples:
        gain = icl_gain(results, icl_samples)
        print("\n| ICL task (lite, acc) | 0-shot | 5-shot | gain | 95% CI | CI from | 0-vs-5 discordance |")
        print("|---|---:|---:|---:|---|---|---:|")
        rows = sorted(gain["tasks"].items()) + ([("**mean**", gain["mean"])] if gain.get("mean") else [])
        for name, g in rows:
            ci = g.ci95
            base = name.removesuffix(" (lite)")
            print(
                f"| {name} | {g.low:.3f} | {g.high:.3f} | {g.gain:+.3f} | "
                f"{'' if ci is None else f'[{ci[0]:+.3f}, {ci[1]:+.3f}]'} | {g.method} | "
                f"{_f(discordance(icl_samples, base))} |"
            )
        for base, why in (gain.get("skipped") or {}).items():
            print(f"\n{base}: {why}")
    return 0


def discordance(samples: dict, base: str) -> float | None:
    """Share of lite docs on which exactly one of 0-shot and 5-shot is right."""
    a = samples.get(f"slm_icl_{base}_0shot_lite", {}).get("none")
    b = samples.get(f"slm_icl_{base}_5shot_lite", {}).get("none")
    acc0, acc5 = (None if ds is None else ds.by_doc("acc") for ds in (a, b))
    if not acc0 or not acc5:
        return None
    both = [(acc0[d], acc5[d]) for d in acc5 if d in acc0]
    return sum(x != y for x, y in both) / len(both) if both else None


def _f(x) -> str:
    return "" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    sys.exit(main())
