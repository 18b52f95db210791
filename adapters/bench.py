"""``slm-suite bench``: a standard runtime benchmark of a GGUF model on this machine.

Two protocols, each repeated ``runs`` times after one warm-up run, with a pause between
runs so thermal and scheduler state settle:

* ``survey`` -- the SLM survey's protocol: a 50-token prompt, 50 generated tokens, a
  2048-token context; reports time to first token, prefill tokens/s and decode ms/token;
* ``llama-bench`` -- llama.cpp's standard tests: ``pp512`` (prompt processing of 512
  tokens, tokens/s) and ``tg128`` (128 single-token decode steps, ms/token).

Prompts are random token ids (seeded), as llama-bench uses; generation is greedy and does
not stop at end-of-sequence. Results are medians with the inter-quartile range and every
value, inside the ``bench`` key of a ``slm-suite.cost/1`` record.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from slm_tasks.adapters.cost import CostMeter, software_versions
from slm_tasks.adapters.hardware import describe as describe_hardware

PROTOCOLS = ("survey", "llama-bench")
SURVEY = {"prompt_tokens": 50, "gen_tokens": 50, "n_ctx": 2048}
LLAMA_BENCH = {"pp": 512, "tg": 128}


def stats(values) -> dict:
    """{"median", "iqr", "values"} (plus min/max) of a list of numbers."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return {"median": None, "iqr": None, "min": None, "max": None, "values": []}
    q25, q50, q75 = np.percentile(v, [25, 50, 75])
    return {"median": float(q50), "iqr": float(q75 - q25), "min": float(v.min()), "max": float(v.max()),
            "values": [float(x) for x in v]}


def _random_tokens(engine, n: int, rng: np.random.Generator) -> list[int]:
    return [int(t) for t in rng.integers(low=1000 if engine.n_vocab > 2000 else 0, high=engine.n_vocab, size=n)]


def _prefill(engine, tokens) -> tuple[float, np.ndarray]:
    engine.clear()
    t0 = time.perf_counter()
    row = engine.set_prefix(tokens)
    return time.perf_counter() - t0, row


def _decode_steps(engine, first_logits, n: int) -> float:
    """n greedy single-token decode steps after what the cache holds; seconds taken."""
    logits = first_logits
    t0 = time.perf_counter()
    for _ in range(n):
        tok = int(logits.argmax())
        (_, row), = engine.decode([tok], [len(engine.cached)], [0], [True], prompt=False)
        logits = row.copy()
        engine.cached.append(tok)
    return time.perf_counter() - t0


def _survey_run(engine, rng) -> dict:
    prompt = _random_tokens(engine, SURVEY["prompt_tokens"], rng)
    t0 = time.perf_counter()
    pp_s, logits = _prefill(engine, prompt)
    int(logits.argmax())  # the first token is chosen from the prompt's logits
    ttft = time.perf_counter() - t0
    tg_s = _decode_steps(engine, logits, SURVEY["gen_tokens"] - 1)
    return {"ttft_ms": ttft * 1000, "pp_tok_s": len(prompt) / pp_s,
            "tg_ms_per_token": tg_s * 1000 / (SURVEY["gen_tokens"] - 1), "e2e_s": ttft + tg_s,
            "_steps": SURVEY["gen_tokens"] - 1, "_decode_s": tg_s}


def _llama_bench_run(engine, rng) -> dict:
    pp_s, _ = _prefill(engine, _random_tokens(engine, LLAMA_BENCH["pp"], rng))
    # tg128 starts from an empty cache, one token at a time
    engine.clear()
    start = _random_tokens(engine, 1, rng)
    t0 = time.perf_counter()
    row = engine.set_prefix(start)
    first = time.perf_counter() - t0
    steps_s = _decode_steps(engine, row, LLAMA_BENCH["tg"] - 1)
    tg_s = first + steps_s
    return {"pp512_tok_s": LLAMA_BENCH["pp"] / pp_s, "tg128_ms_per_token": tg_s * 1000 / LLAMA_BENCH["tg"],
            "_steps": LLAMA_BENCH["tg"] - 1, "_decode_s": steps_s}


def bench(model: str, runs: int = 5, pause_s: float = 2.0, n_threads: int | None = None,
          protocols=PROTOCOLS, n_batch: int = 512, seed: int = 0, progress: bool = True) -> dict:
    """Benchmark ``model`` (GGUF path or short name); returns a cost record with ``bench``."""
    from slm_tasks.adapters.llamacpp import LlamaEngine
    from slm_tasks.adapters.models import SHORT_NAMES, resolve_model

    protocols = tuple(protocols)
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown or not protocols:
        from slm_tasks.errors import SLMError

        raise SLMError(f"unknown bench protocol(s) {sorted(unknown)}; choose from {', '.join(PROTOCOLS)}")
    path = resolve_model(model)
    n_ctx = max(SURVEY["n_ctx"], LLAMA_BENCH["pp"] + LLAMA_BENCH["tg"])
    engine = LlamaEngine(path, max_length=n_ctx, n_batch=n_batch, n_threads=n_threads, n_parallel=1, kv_slack=0)
    try:
        info = engine.describe()
        info["name"] = model if str(model).lower() in SHORT_NAMES else (info["name"] or path.stem)
        meter = CostMeter(info, describe_hardware(threads=engine.n_threads),
                          software_versions(engine.llama_cpp_version, engine.build()))
        rng = np.random.default_rng(seed)
        fns = {"survey": _survey_run, "llama-bench": _llama_bench_run}
        results: dict[str, list[dict]] = {p: [] for p in protocols}
        energy: dict[str, list[float]] = {p: [] for p in protocols}
        bar = tqdm(total=(runs + 1) * len(protocols), disable=not progress, desc=f"bench {model}", file=sys.stderr)
        try:
            for i in range(runs + 1):  # run 0 warms caches and is not reported
                for p in protocols:
                    with meter.measure({} if i == 0 else {f"bench:{p}": 1.0}) as work:
                        t0, s0 = engine.prompt_tokens, engine.prefill_s
                        res = fns[p](engine, rng)
                        work.prompt_tokens = engine.prompt_tokens - t0
                        work.prefill_s = engine.prefill_s - s0
                        work.generated_tokens = work.decode_tokens = res.pop("_steps")
                        work.decode_s = res.pop("_decode_s")
                    if i > 0:
                        results[p].append(res)
                        energy[p].append(meter.tasks[f"bench:{p}"].energy_j)
                    bar.update(1)
                if pause_s and i < runs:
                    time.sleep(pause_s)
        finally:
            bar.close()
        record = meter.record()
        record["tasks"] = {}  # bench runs are not tasks
        energy_ok = record["run"]["energy_j"] is not None
        per_protocol = {}
        for p, rows in results.items():
            keys = rows[0].keys() if rows else []
            entry = {k: stats(r[k] for r in rows) for k in keys}
            cumulative = energy[p]
            entry["energy_j"] = stats(np.diff([0.0] + cumulative)) if energy_ok else None
            per_protocol[p] = entry
        survey, lb = per_protocol.get("survey", {}), per_protocol.get("llama-bench", {})
        record["bench"] = {
            "protocol": "+".join({"survey": "survey-p50-g50-c2048", "llama-bench": "llama-bench-pp512-tg128"}[p]
                                 for p in protocols),
            "runs": runs,
            "warmup_runs": 1,
            "pause_s": pause_s,
            "n_threads": engine.n_threads,
            "n_batch": n_batch,
            "build": engine.build(),
            "pp_tok_s": lb.get("pp512_tok_s") or survey.get("pp_tok_s"),
            "tg_ms_per_token": lb.get("tg128_ms_per_token") or survey.get("tg_ms_per_token"),
            "ttft_ms": survey.get("ttft_ms"),
            "peak_rss_bytes": record["run"]["peak_rss_bytes"],
            "energy_unavailable_reason": record["run"]["energy_unavailable_reason"],
            "protocols": per_protocol,
        }
        return record
    finally:
        engine.close()


def _fmt(s: dict | None, unit: str) -> str:
    if not s or s.get("median") is None:
        return "n/a"
    return f"{s['median']:.1f} {unit} (IQR {s['iqr']:.1f})"


def summary_lines(record: dict) -> list[str]:
    b = record["bench"]
    lines = [f"model: {record['model']['name']} ({record['model']['quant']}, {record['model']['n_params']:,} params)",
             f"build: {b['build']}",
             f"threads: {b['n_threads']}, runs: {b['runs']} (+1 warm-up), pause {b['pause_s']} s"]
    for p, entry in b["protocols"].items():
        parts = []
        for key, value in entry.items():
            if key == "energy_j" or not value:
                continue
            unit = "tok/s" if key.endswith("tok_s") else "ms" if key.endswith("_ms") else (
                "ms/token" if key.endswith("per_token") else "s")
            parts.append(f"{key} {_fmt(value, unit)}")
        lines.append(f"{p}: " + "; ".join(parts))
    mb = (b["peak_rss_bytes"] or 0) / 2**20
    lines.append(f"peak RSS: {mb:.0f} MiB; energy: "
                 + ("measured (see JSON)" if b["energy_unavailable_reason"] is None else b["energy_unavailable_reason"]))
    return lines


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="runtime benchmark of a GGUF model (survey p50/g50 and llama-bench pp512/tg128)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a .gguf path or a short name (smollm2-135m, gemma3-270m)")
    p.add_argument("--runs", type=int, default=5, help="measured runs per protocol (default 5)")
    p.add_argument("--pause", type=float, default=2.0, help="seconds to wait between runs (default 2)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all usable cores)")
    p.add_argument("--protocol", default=",".join(PROTOCOLS), help="comma-separated: survey, llama-bench (default both)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random prompt tokens")
    p.add_argument("--output", "-o", type=Path, default=None, help="write the cost record (JSON) here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    record = bench(args.model, runs=args.runs, pause_s=args.pause, n_threads=args.threads,
                   protocols=[x.strip() for x in args.protocol.split(",") if x.strip()], seed=args.seed,
                   progress=not args.no_progress)
    for line in summary_lines(record):
        print(line)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0


def main(argv=None) -> int:
    """``python -m slm_tasks.adapters.bench MODEL ...`` (same options as ``slm-suite bench``)."""
    parser = argparse.ArgumentParser(prog="slm-suite")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
