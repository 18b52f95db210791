"""How honest is the progress bar's time left in the generation phase? A replay of a run.

Takes a finished ``slm-suite run`` (its samples files and the response store that holds its
answers with the seconds each took), puts the generations in the order the backend ran
them, and feeds them through :class:`RunProgress` one by one: at each point it prints the
estimate of the time left divided by the true time left, for the token model the bar uses
and for a plain rate per request. Needs the model's tokenizer (llama.cpp, vocab only).

    python benchmarks/progress_eta.py --results slm-results/smollm2-135m --stamp 2026-12-01T12-19-18.159133
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sqlite3
import sys
from pathlib import Path

import llama_cpp

from slm_tasks.adapters import models, scoring, store, store_keys
from slm_tasks.adapters.progress import Job, RunProgress
from slm_tasks.results.cost_record import record_of_results


def load(results: str, stamp: str, store_path: str, gguf: str) -> list[tuple[Job, int, float]]:
    db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    seconds = {
        bytes(req): json.loads(t)["s"]
        for req, t in db.execute(
            "SELECT req, timing FROM responses WHERE kind=?", (store_keys.KINDS["generate_until"],)
        )
    }
    vocab = llama_cpp.Llama(gguf, vocab_only=True, verbose=False)
    jobs, seen = [], set()
    for path in sorted(glob.glob(f"{results}/samples_*_{stamp}.jsonl")):
        task = os.path.basename(path)[len("samples_") : -len(f"_{stamp}.jsonl")]
        for line in open(path):
            sample = json.loads(line)
            args = sample["arguments"]["gen_args_0"]
            if not isinstance(args.get("arg_1"), dict):
                break  # not a generation task
            key = store_keys.request_key("generate_until", (args["arg_0"], args["arg_1"]))
            if key in seen:
                continue
            seen.add(key)
            ids = tuple(vocab.tokenize(args["arg_0"].encode(), add_bos=False, special=True))
            out = len(vocab.tokenize(sample["resps"][0][0].encode(), add_bos=False, special=True))
            jobs.append((ids, task, args["arg_1"].get("max_gen_toks", 256), out, seconds[bytes.fromhex(key)]))
    jobs.sort(key=lambda j: j[0])  # the backend's order: by prompt, neighbours share prefixes
    planned, prev = [], ()
    for ids, task, max_gen, out, s in jobs:
        planned.append((Job(task, len(ids) - scoring.common_prefix_len(prev, ids), max_gen), out, s))
        prev = ids
    return planned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", required=True, help="the run's results folder")
    ap.add_argument("--stamp", required=True, help="the run's timestamp in its file names")
    ap.add_argument("--store", default=str(store.default_store_path()))
    ap.add_argument("--model", default="smollm2-135m")
    args = ap.parse_args()
    results_file = Path(args.results) / f"results_{args.stamp}.json"
    cost = record_of_results(json.loads(results_file.read_text()), results_file)[0].run
    jobs = load(args.results, args.stamp, args.store, str(models.resolve_model(args.model)))
    gen_s = sum(s for _, _, s in jobs)
    # the scoring phase as the bar saw it: the run's other prompt tokens and seconds
    score_tokens = cost["prompt_tokens"] - sum(j.prompt_tokens for j, _, _ in jobs)
    print(
        f"{len(jobs)} generations, {gen_s:.0f} s; scoring {score_tokens} prompt tokens in "
        f"{cost['wall_s'] - gen_s:.0f} s"
    )
    print("| generations done | token model: estimate / truth | per request: estimate / truth |")
    print("|---:|---:|---:|")
    for stop in (3, 10, 50, 100, 160, 250, 300, 400, len(jobs) - 10):
        run = RunProgress({"loglikelihood": 1, "generate_until": len(jobs)}, disable=True)
        with run.phase("loglikelihood", 1):
            run._advance("loglikelihood", 1, cost["wall_s"] - gen_s, score_tokens)
        with run.phase("generate_until", len(jobs), [j for j, _, _ in jobs]):
            for job, out, s in jobs[:stop]:
                run._advance("generate_until", 1, s, job.prompt_tokens, out)
            truth = sum(s for _, _, s in jobs[stop:])
            per_request = run.phases["generate_until"].rate() * (len(jobs) - stop)
            print(f"| {stop} | {run.eta()[0] / truth:.2f} | {per_request / truth:.2f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
