"""The full ``slm_suite`` time on a model, extrapolated from a measured lite run.

Each lite task is a seeded random (or stratified) subset of its full task's documents, so
its measured time per document (the cost record's per-task ``wall_s``) estimates the full
task's: full seconds = lite seconds x N / n. Document counts come from lm-eval's own task
loading (the same loader, hub or mirror). Few-shot prefixes shared by a subject's
documents make full runs slightly cheaper per document than this estimate.

With ``--count-tokens`` it also builds every request (no model runs), tokenises it with
the model's tokenizer and plans it exactly as slm-llamacpp does (duplicates removed across
tasks, one context per group, the common prefix with the previous context kept): the
tokens the adapter will evaluate, per task (generation tasks: prompt tokens only). Slow
for the full suite (many minutes).

    SLM_DATA_DIR=../shared/hub python benchmarks/full_suite_estimate.py \
        --lite-run slm-results/smollm2-135m/results_<date>.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def build(suite: str, requests: bool):
    """Every leaf task of ``suite`` as ``lm_eval --tasks suite`` loads it (few-shot variants
    the mirror cannot feed are dropped, as in a run), with its requests built if asked."""
    from slm_tasks.api import task_manager

    tasks = task_manager(tasks=[suite]).load([suite])["tasks"]
    if requests:
        for task in tasks.values():
            # lm-eval's simple_evaluate seeds every task's few-shot sampler (fewshot_random_seed
            # 1234); without it the draws, and so the token counts, change from process to process.
            task.set_fewshot_seed(seed=1234)
            task.build_all_requests(limit=None, rank=0, world_size=1)
    return tasks


def docs(tasks: dict) -> dict:
    return {name: {"docs": len(t.eval_docs), "kind": t.OUTPUT_TYPE} for name, t in tasks.items()}


def count(tasks: dict, lm) -> dict:
    """Per task: docs, requests, and tokens the adapter evaluates (a group shared by tasks
    is split between them, as the cost meter does)."""
    from slm_tasks.adapters import scoring

    rows = {
        name: {"docs": len(t.eval_docs), "requests": 0, "kind": t.OUTPUT_TYPE, "tokens": 0.0}
        for name, t in tasks.items()
    }
    pairs, owners, prompts = [], [], []
    for name, task in tasks.items():
        for inst in task.instances:
            rows[name]["requests"] += 1
            if inst.request_type == "loglikelihood":
                pairs.append(scoring.encode_request(*inst.args, lm.tok_encode, lm.prefix_token_id))
                owners.append(name)
            elif inst.request_type == "generate_until":
                prompts.append((tuple(lm.tok_encode(inst.args[0])), name))
    plan = scoring.plan_groups(pairs, max_length=lm.max_length)
    prev: tuple = ()
    for g in plan.groups:
        keep = min(scoring.common_prefix_len(prev, g.context), len(g.context) - 1)
        tokens = len(g.context) - keep + sum(max(len(c) - 1, 0) for c in g.continuations)
        members = [owners[i] for m in g.members for i in m]
        for name in members:
            rows[name]["tokens"] += tokens / len(members)
        prev = g.context
    prev = ()
    for ids, name in sorted(prompts):
        rows[name]["tokens"] += len(ids) - min(scoring.common_prefix_len(prev, ids), len(ids) - 1)
        prev = ids
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lite-run", type=Path, help="results_*.json of a slm_suite_lite run with slm-llamacpp")
    ap.add_argument("--count-tokens", action="store_true", help="also count the tokens slm-llamacpp evaluates")
    ap.add_argument("--model", default="smollm2-135m", help="tokenizer for --count-tokens")
    ap.add_argument("--out", type=Path, default=Path("full-suite-estimate.json"))
    args = ap.parse_args(argv)

    lm = None
    if args.count_tokens:
        from slm_tasks.adapters.llamacpp import LlamaCppLM

        lm = LlamaCppLM(model=args.model, n_parallel=1)
    report: dict = {"suites": {}}
    for suite in ("slm_suite_lite", "slm_suite"):
        t0 = time.perf_counter()
        tasks = build(suite, requests=lm is not None)
        rows = count(tasks, lm) if lm is not None else docs(tasks)
        report["suites"][suite] = rows
        extra = f", {sum(r['tokens'] for r in rows.values()):,.0f} tokens evaluated" if lm is not None else ""
        print(
            f"{suite}: {len(rows)} tasks, {sum(r['docs'] for r in rows.values())} docs{extra} "
            f"(loaded in {time.perf_counter() - t0:.0f} s)",
            file=sys.stderr,
        )
    if args.lite_run:
        report["extrapolation"] = extrapolate(report["suites"], json.loads(args.lite_run.read_text()))
    args.out.write_text(json.dumps(report, indent=2))
    print(render(report))
    return 0


def extrapolate(suites: dict, lite_results: dict) -> dict:
    """Full-task seconds = lite-task seconds x full docs / lite docs."""
    cost = (lite_results.get("config") or {}).get("slm_cost") or {}
    measured = cost.get("tasks") or {}
    lite, full = suites["slm_suite_lite"], suites["slm_suite"]
    rows = {}
    for name, f in full.items():
        lname = name + "_lite"
        if lname not in lite or lname not in measured or not lite[lname]["docs"]:
            rows[name] = {"full_s": None}
            continue
        secs, scale = measured[lname]["wall_s"], f["docs"] / lite[lname]["docs"]
        rows[name] = {
            "kind": f["kind"],
            "lite_docs": lite[lname]["docs"],
            "full_docs": f["docs"],
            "lite_s": secs,
            "scale": scale,
            "full_s": secs * scale,
        }
    known = [r for r in rows.values() if r.get("full_s") is not None]
    return {
        "tasks": rows,
        "full_s": sum(r["full_s"] for r in known),
        "lite_s": sum(r["lite_s"] for r in known),
        "adapter_lite_s": cost.get("run", {}).get("wall_s"),
        "missing": sorted(n for n, r in rows.items() if r.get("full_s") is None),
    }


def render(report: dict) -> str:
    lines = []
    if any("tokens" in r for rows in report["suites"].values() for r in rows.values()):
        lines += ["| suite | tasks | docs | requests | tokens evaluated |", "|---|---:|---:|---:|---:|"]
        for s, rows in report["suites"].items():
            lines.append(
                f"| {s} | {len(rows)} | {sum(r['docs'] for r in rows.values())} | "
                f"{sum(r['requests'] for r in rows.values())} | {sum(r['tokens'] for r in rows.values()):,.0f} |"
            )
        lines.append("")
    ex = report.get("extrapolation")
    if ex:
        lines += [
            "| task | kind | lite docs | lite s (measured) | full docs | full s (extrapolated) |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for name, r in sorted(ex["tasks"].items()):
            if r.get("full_s") is not None:
                lines.append(
                    f"| {name} | {r['kind']} | {r['lite_docs']} | {r['lite_s']:.0f} | {r['full_docs']} | "
                    f"{r['full_s']:.0f} |"
                )
        lines.append(
            f"| **total** | | | {ex['lite_s']:.0f} ({ex['lite_s'] / 60:.0f} min) | | "
            f"{ex['full_s']:.0f} ({ex['full_s'] / 3600:.1f} h) |"
        )
        if ex["missing"]:
            lines.append(f"\nnot extrapolated (no lite task measured): {', '.join(ex['missing'])}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
