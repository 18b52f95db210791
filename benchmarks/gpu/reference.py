"""slm-llamacpp's results on the GPU check's stage-2 tasks, computed on a CPU beforehand.

The device check (device_check.py, stage 2) runs the lite multiple-choice tasks and one
generation task with slm-vllm on a GPU and compares every document with these results.
Run it in a venv with llama-cpp-python (scripts/setup.sh); pack.py carries the output::

    SLM_DATA_DIR=../shared/hub HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 \\
        python benchmarks/gpu/reference.py --out benchmarks/gpu/reference.json

``--model-args`` defaults to ``model=smollm2-135m,dequantise=f16``: the Q4_1 GGUF's weights
through llama.cpp's F16 kernels (99.8% per-document agreement with transformers fp32 on
these tasks, benchmarks/RESULTS-llamacpp.md, and 1.8x faster here than the Q4_1 kernels).
The GPU runs the same weights exported to bf16. ``--gen-limit`` bounds the generation
task (gsm8k's 5-shot prompts are about 1,000 tokens: seconds per document on a CPU); the
device check reads the limit from this file and uses the same one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common


def parse_model_args(text: str) -> dict:
    out = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        out[key.strip()] = value.strip()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model-args", default="model=smollm2-135m,dequantise=f16")
    ap.add_argument("--limit", type=int, default=None, help="documents per multiple-choice task (default: all lite)")
    ap.add_argument("--gen-limit", type=int, default=16, help="documents of the generation task")
    ap.add_argument(
        "--tasks", default=None, help="comma-separated multiple-choice tasks (default: the lite MC domains)"
    )
    args = ap.parse_args(argv)

    from lm_eval import simple_evaluate

    mc = args.tasks.split(",") if args.tasks else common.mc_lite_tasks()
    model_args = parse_model_args(args.model_args)
    from slm_tasks.adapters.llamacpp import LlamaCppLM

    t0 = time.perf_counter()
    lm = LlamaCppLM(**model_args)
    load_s = time.perf_counter() - t0
    runs, digests, results = [], {}, {}
    try:
        for tasks, limit in ((mc, args.limit), ([common.GEN_TASK], args.gen_limit)):
            t1 = time.perf_counter()
            out = simple_evaluate(
                model=lm,
                tasks=tasks,
                limit=limit,
                log_samples=True,
                task_manager=common.slm_task_manager(),
                bootstrap_iters=0,
            )
            wall = time.perf_counter() - t1
            digests.update(common.digest(out["samples"]))
            results.update({t: out["results"][t] for t in tasks if t in out["results"]})
            runs.append({"tasks": tasks, "limit": limit, "wall_s": round(wall, 1)})
            print(f"reference: {len(tasks)} task(s), limit {limit}: {wall:.0f} s", flush=True)
        cost = lm.get_model_info().get("slm_cost")
    finally:
        lm.close()
    import lm_eval

    ref = {
        "schema": "slm-suite.gpu-reference/1",
        "backend": "slm-llamacpp",
        "model_args": model_args,
        "mc_tasks": mc,
        "mc_limit": args.limit,
        "gen_task": common.GEN_TASK,
        "gen_limit": args.gen_limit,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "versions": {"lm_eval": lm_eval.__version__},
        "load_s": round(load_s, 1),
        "runs": runs,
        "results": results,
        "cost": cost,
        "docs": digests,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    common.write_json(args.out, ref)
    print(f"reference: {sum(len(d) for d in digests.values())} documents -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
