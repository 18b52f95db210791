"""What the long-context domain costs on this machine, and what sharing the haystack buys.

    python benchmarks/long_context.py lite  [--model smollm2-135m] [--out benchmarks/out/lc]
    python benchmarks/long_context.py probe [--model smollm2-135m] [--lengths 1000 2000 4000 8000]
    python benchmarks/long_context.py plan  [--model smollm2-135m] [--probe FILE]

* ``lite``: the lite long-context tasks (``slm_long_context_lite``) run as ``slm-suite run``
  runs them (slm-llamacpp, F16 by default, every usable core, no response store), once with
  llama.cpp's prefix cache and once without: the wall time of each is what these tasks add to
  a lite run, and the difference is what sharing the haystack prefix buys. Results and
  samples go to ``--out``.
* ``probe``: one single-needle prompt per length, prefix cache off: prefill speed, decode
  speed and peak memory at each length (the survey reports memory at long contexts).
* ``plan``: the full domain's work from its task configs, counted exactly in the model's
  tokens: prompt tokens the engine must compute when prompts are served sorted (each one
  sharing its longest prefix with the one before, as the backend orders them) and without
  sharing; with ``--probe`` (a probe's JSON) an ESTIMATE of the full domain's time: the
  computed tokens at each length over the probed prefill speed, plus every cell's
  ``max_gen_toks`` at the probed decode speed (an upper bound for generation).

Every command prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TASKS = ("slm_niah_single", "slm_niah_multi", "slm_niah_reasoning")
RUN_FIGURES = ("wall_s", "prompt_tokens", "generated_tokens", "prefill_s", "requests")


def lite(model: str, out: Path) -> dict:
    from slm_tasks.api import evaluate

    os.environ["SLM_SUITE_STORE"] = "off"  # measure the engine, not stored answers
    figures = {}
    for cache in (True, False):
        from lm_eval.loggers import EvaluationTracker

        tracker = EvaluationTracker(output_path=str(out))
        t0, cpu0 = time.perf_counter(), _cpu_s()
        res = evaluate(
            "slm-llamacpp",
            {"model": model, "prefix_cache": cache},
            tasks=["slm_long_context_lite"],
            log_samples=True,
            evaluation_tracker=tracker,
        )
        wall, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
        run = (res["config"].get("slm_cost") or {}).get("run") or {}
        figures["prefix_cache_on" if cache else "prefix_cache_off"] = {
            "wall_s": round(wall, 1),
            # CPU seconds over the threads: the wall time this would take with the cores to
            # itself (other work on the machine stretches the wall time, not this)
            "cpu_s": round(cpu, 1),
            "threads": len(os.sched_getaffinity(0)),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "run": {k: run.get(k) for k in RUN_FIGURES},
            "acc": {t: res["results"][f"{t}_lite"]["acc,none"] for t in TASKS},
        }
        print(json.dumps(figures), file=sys.stderr)  # kept even if saving fails
        if cache:
            tracker.save_results_aggregated(results=res, samples=res["samples"])
            for task in res["configs"]:
                tracker.save_results_samples(task_name=task, samples=res["samples"][task])
    on, off = figures["prefix_cache_on"], figures["prefix_cache_off"]
    return {
        "model": model,
        "tasks": "slm_long_context_lite",
        **figures,
        "sharing_saves_wall_s": round(off["wall_s"] - on["wall_s"], 1),
        "sharing_saves_cpu_s": round(off["cpu_s"] - on["cpu_s"], 1),
    }


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def probe(model: str, lengths: list[int]) -> dict:
    from lm_eval.api.instance import Instance

    from slm_tasks.adapters.llamacpp import LlamaCppLM
    from slm_tasks.long_context.task import cells

    lm = LlamaCppLM(model=model, prefix_cache=False)
    rows = []
    for length in lengths:
        (cell,) = cells("single", [length], [50], lc_max_gen_toks=8, model=model)
        eng = lm.engine
        p0, s0 = eng.prompt_tokens, eng.prefill_s
        t0, cpu0 = time.perf_counter(), _cpu_s()
        req = Instance("generate_until", {}, (cell.prompt, {"until": [], "max_gen_toks": 9}), 0)
        (out,) = lm.generate_until([req])
        wall, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
        tokens, prefill = eng.prompt_tokens - p0, eng.prefill_s - s0
        rows.append(
            {
                "length": length,
                "prompt_tokens": tokens,
                "prefill_s": round(prefill, 2),
                "prefill_tok_s": round(tokens / prefill, 1) if prefill else None,
                "decode_ms_per_token": round(1000 * (wall - prefill) / 8, 1),
                "wall_s": round(wall, 1),
                "cpu_s": round(cpu, 1),
                "load_avg_1m": round(os.getloadavg()[0], 2),
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "output": out,
            }
        )
    return {
        "model": model,
        "weights": lm.spec.weights,
        "threads": lm.spec.threads,
        "kv_cells": eng.kv_size,
        "cells": rows,
    }


def plan(model: str, probe_file: Path | None) -> dict:
    from slm_tasks.long_context.task import cells
    from slm_tasks.long_context.tokenizers import model_tokenizer

    tok, _ = model_tokenizer({"model": model})
    prompts = []  # (token ids, length, max_gen_toks)
    for task in TASKS:
        meta = yaml.safe_load((REPO / "task_configs/long_context" / f"{task}.yaml").read_text())["metadata"]
        keys = {k: v for k, v in meta.items() if k.startswith("lc_")}
        for c in cells(**keys, model=model):
            prompts.append((tok.tokens(c.prompt, tok.add_bos), c.length, int(meta["lc_max_gen_toks"])))
    prompts.sort(key=lambda p: p[0])  # the backend's order: by prompt tokens
    by_length: dict[int, dict] = {}
    prev: list[int] = []
    for ids, length, gen in prompts:
        shared = 0
        for a, b in zip(prev, ids):
            if a != b:
                break
            shared += 1
        row = by_length.setdefault(length, {"prompts": 0, "tokens": 0, "computed": 0, "max_gen": 0})
        row["prompts"] += 1
        row["tokens"] += len(ids)
        row["computed"] += len(ids) - min(shared, len(ids) - 1)
        row["max_gen"] += gen
        prev = ids
    out = {"model": model, "prompts": len(prompts), "by_length": dict(sorted(by_length.items()))}
    total, computed = (
        sum(r["tokens"] for r in by_length.values()),
        sum(r["computed"] for r in by_length.values()),
    )
    out.update(prompt_tokens=total, computed_tokens=computed, sharing_saves=round(1 - computed / total, 3))
    if probe_file:
        speeds = {r["length"]: r for r in json.loads(probe_file.read_text())["cells"]}
        prefill = sum(r["computed"] / speeds[n]["prefill_tok_s"] for n, r in by_length.items())
        unshared = sum(r["tokens"] / speeds[n]["prefill_tok_s"] for n, r in by_length.items())
        gen = sum(r["max_gen"] * speeds[n]["decode_ms_per_token"] / 1000 for n, r in by_length.items())
        out["ESTIMATE_prefill_minutes"] = round(prefill / 60, 1)
        out["ESTIMATE_prefill_without_sharing_minutes"] = round(unshared / 60, 1)
        # every cell generating its max_gen_toks: an upper bound (answers end at a newline)
        out["ESTIMATE_generation_upper_bound_minutes"] = round(gen / 60, 1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("lite", "probe", "plan"))
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "long_context")
    ap.add_argument("--lengths", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    ap.add_argument("--probe", type=Path, help="a probe's JSON output, for plan's estimate")
    args = ap.parse_args(argv)
    if args.what == "lite":
        result = lite(args.model, args.out)
    elif args.what == "probe":
        result = probe(args.model, args.lengths)
    else:
        result = plan(args.model, args.probe)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
