"""What a sweep profile costs per format: the prompt tokens each task makes the engine evaluate.

Scoring multiple-choice tasks is prompt processing: with its context evaluated once per
document (the engine keeps it for the choices, docs/llamacpp.md), a task costs about
(context tokens + every choice's tokens) / the format's prefill rate. This counts those
tokens with SmolLM2's tokenizer for every task of the given list and divides by a prefill
rate (tok/s) per format, so a profile can be chosen against the sweep's time budget.

    SLM_DATA_DIR=../shared/hub HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 \\
        python benchmarks/quant_profile_cost.py [--tasks a,b] [--rate F16=550,Q4_K_M=300]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from slm_tasks.quant_sweep import PROFILES


def task_tokens(tm, tasks, tokenizer) -> dict[str, tuple[int, int, int]]:
    """task -> (documents, loglikelihood requests, prompt tokens evaluated)."""
    from slm_tasks import run_plan

    loaded = run_plan.preload(tm, tasks)
    out = {}
    for name, task in loaded.get("tasks", {}).items():
        task.build_all_requests(limit=None, rank=0, world_size=1)
        by_doc: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        n = 0
        for inst in task.instances:
            ctx, cont = inst.args[0], inst.args[1]
            by_doc[inst.doc_id][ctx].append(cont)
            n += 1
        tokens = 0
        for contexts in by_doc.values():
            for ctx, conts in contexts.items():
                tokens += len(tokenizer(ctx)) + sum(len(tokenizer(c)) for c in conts)
        out[name] = (len(by_doc), n, tokens)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="mc")
    p.add_argument("--tasks", default=None)
    p.add_argument("--rate", default="F16=550", help="FORMAT=prefill tok/s,... (slm-suite bench's pp512)")
    a = p.parse_args(argv)
    from slm_tasks.adapters.llamacpp import LlamaCppLM
    from slm_tasks.api import task_manager

    tasks = a.tasks.split(",") if a.tasks else list(PROFILES[a.profile][0])
    lm = LlamaCppLM(model="smollm2-135m", n_ctx=256, dequantise="stored", store="off")
    tm = task_manager(tasks=tasks)
    counts = task_tokens(tm, tasks, lm.tok_encode)
    rates = {k: float(v) for k, v in (x.split("=") for x in a.rate.split(","))}
    print("| task | docs | requests | prompt tokens | " + " | ".join(f"{f} s" for f in rates) + " |")
    print("|:---|---:|---:|---:|" + "---:|" * len(rates))
    total = [0, 0, 0]
    for name, (docs, n, tokens) in sorted(counts.items()):
        total = [total[0] + docs, total[1] + n, total[2] + tokens]
        per_format = " | ".join(f"{tokens / r:.0f}" for r in rates.values())
        print(f"| {name} | {docs} | {n} | {tokens:,} | {per_format} |")
    print(
        f"| **total** | {total[0]} | {total[1]} | {total[2]:,} | "
        + " | ".join(f"{total[2] / r:.0f}" for r in rates.values())
        + " |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
