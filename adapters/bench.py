"""``slm-suite bench``: a standard runtime benchmark of a GGUF model on this machine.

Two protocols, each repeated ``runs`` times after one warm-up run, with a pause between
runs so thermal and scheduler state settle:

* ``survey`` -- the SLM survey's protocol: a 50-token prompt, 50 generated tokens, a
  2048-token context; tests ``pp50`` (prefill), ``tg50`` (the 49 decode steps after the
  first token, which comes from the prompt's logits) and ``ttft`` (time to first token);
* ``llama-bench`` -- llama.cpp's standard tests: ``pp512`` (prompt processing of 512
  tokens in one batch) and ``tg128`` (128 single-token decode steps from an empty cache);
* ``long-context`` (not in the default set) -- prefill and decode speed and the KV-cache,
  compute-buffer and resident memory at the long-context domain's lengths
  (:mod:`slm_tasks.adapters.bench_long`): tests ``pp<length>`` and ``tg16 @ d<length>``.

Prompts are random token ids (seeded), as llama-bench uses; generation is greedy and does
not stop at end-of-sequence. The table is llama-bench's: one row per test, t/s as mean
± sample standard deviation over the runs, plus ms/token (tg) and time to first token
(ms); ``-o md|csv|json`` picks its format on stdout. ``--record FILE`` writes the
``slm-suite.cost/1`` record: its ``bench`` key holds medians, IQR, mean, sd and every
value of each metric, and the table's rows under ``tests``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from slm_tasks.adapters import bench_long
from slm_tasks.adapters.bench_table import FORMATS, render
from slm_tasks.adapters.cost import CostMeter, software_versions
from slm_tasks.adapters.hardware import describe as describe_hardware

PROTOCOLS = ("survey", "llama-bench", "long-context")
DEFAULT_PROTOCOLS = ("survey", "llama-bench")
LONG = "long-context"
SURVEY = {"prompt_tokens": 50, "gen_tokens": 50, "n_ctx": 2048}
LLAMA_BENCH = {"pp": 512, "tg": 128}

# test -> (protocol, n_prompt, n_gen, n_depth) in llama-bench's terms: the timed work of a
# run is n_prompt + n_gen tokens (its t/s), n_depth tokens already in the cache
TESTS = {
    "pp50": ("survey", SURVEY["prompt_tokens"], 0, 0),
    "tg50": ("survey", 0, SURVEY["gen_tokens"] - 1, SURVEY["prompt_tokens"]),
    "ttft": ("survey", SURVEY["prompt_tokens"], 0, 0),
    "pp512": ("llama-bench", LLAMA_BENCH["pp"], 0, 0),
    "tg128": ("llama-bench", 0, LLAMA_BENCH["tg"], 0),
}
GEN_TEST = {"survey": "tg50", "llama-bench": "tg128"}  # the decode steps of each protocol


def stats(values) -> dict:
    """{"median", "iqr", "mean", "sd", "values"} (plus min/max) of a list of numbers.

    ``sd`` is the sample standard deviation (0 for one value), as llama-bench's ± figure."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return {"median": None, "iqr": None, "mean": None, "sd": None, "min": None, "max": None, "values": []}
    q25, q50, q75 = np.percentile(v, [25, 50, 75])
    return {
        "median": float(q50),
        "iqr": float(q75 - q25),
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
        "values": [float(x) for x in v],
    }


def _prefill(engine, tokens) -> tuple[float, np.ndarray]:
    engine.clear()
    t0 = time.perf_counter()
    row = engine.set_prefix(tokens)
    return time.perf_counter() - t0, row


def _decode_steps(engine, token: int, n: int) -> float:
    """n greedy single-token steps, the first one decoding ``token``; seconds taken."""
    t0 = time.perf_counter()
    for _ in range(n):
        token = int(engine.step(token).argmax())
    return time.perf_counter() - t0


def _survey_run(engine, rng) -> tuple[dict, dict]:
    prompt = bench_long.random_tokens(engine, SURVEY["prompt_tokens"], rng)
    engine.clear()
    t0 = time.perf_counter()
    logits = engine.set_prefix(prompt)
    pp_s = time.perf_counter() - t0
    first = int(logits.argmax())  # the first token is chosen from the prompt's logits
    ttft = time.perf_counter() - t0
    steps = SURVEY["gen_tokens"] - 1
    tg_s = _decode_steps(engine, first, steps)
    metrics = {
        "ttft_ms": ttft * 1000,
        "pp_tok_s": len(prompt) / pp_s,
        "tg_ms_per_token": tg_s * 1000 / steps,
        "e2e_s": ttft + tg_s,
    }
    return metrics, {"pp50": pp_s, "tg50": tg_s, "ttft": ttft}


def _llama_bench_run(engine, rng) -> tuple[dict, dict]:
    pp_s, _ = _prefill(engine, bench_long.random_tokens(engine, LLAMA_BENCH["pp"], rng))
    # tg128 starts from an empty cache, one token at a time, as llama-bench's
    engine.clear()
    tg_s = _decode_steps(engine, bench_long.random_tokens(engine, 1, rng)[0], LLAMA_BENCH["tg"])
    metrics = {"pp512_tok_s": LLAMA_BENCH["pp"] / pp_s, "tg128_ms_per_token": tg_s * 1000 / LLAMA_BENCH["tg"]}
    return metrics, {"pp512": pp_s, "tg128": tg_s}


def _test_row(name: str, seconds: list[float], started: str | None, shape: tuple | None = None) -> dict:
    """One row of the table in llama-bench's terms (avg/stddev of ns and t/s, samples);
    ``shape`` is (protocol, n_prompt, n_gen, n_depth) for a test not in TESTS."""
    protocol, n_prompt, n_gen, n_depth = shape or TESTS[name]
    ns, ts = stats(s * 1e9 for s in seconds), stats((n_prompt + n_gen) / s for s in seconds)
    ms = stats(s * 1000 / (n_gen or 1) for s in seconds)  # per token for tg, whole for ttft
    return {
        "test": name,
        "protocol": protocol,
        "n_prompt": n_prompt,
        "n_gen": n_gen,
        "n_depth": n_depth,
        "test_time": started,
        "avg_ns": round(ns["mean"]),
        "stddev_ns": round(ns["sd"]),
        "avg_ts": ts["mean"],
        "stddev_ts": ts["sd"],
        "avg_ms_per_token": ms["mean"] if n_gen else None,
        "stddev_ms_per_token": ms["sd"] if n_gen else None,
        "avg_ttft_ms": ms["mean"] if name == "ttft" else None,
        "stddev_ttft_ms": ms["sd"] if name == "ttft" else None,
        "samples_ns": [round(x) for x in ns["values"]],
        "samples_ts": ts["values"],
    }


def resolve(model: str, n_threads: int | None = None):
    """The model as stored, as slm-llamacpp resolves it (a
    :class:`~slm_tasks.adapters.model_spec.ModelSpec`)."""
    from slm_tasks.adapters.llamacpp import LlamaCppLM

    return LlamaCppLM.resolve(
        {"model": model, "dequantise": "stored", **({"n_threads": n_threads} if n_threads is not None else {})}
    )


def bench(
    model,
    runs: int = 5,
    pause_s: float = 2.0,
    n_threads: int | None = None,
    protocols=DEFAULT_PROTOCOLS,
    n_batch: int = 512,
    seed: int = 0,
    progress: bool = True,
    lengths=None,
    long_runs: int | None = None,
) -> dict:
    """Benchmark ``model`` in its stored format: a :class:`~slm_tasks.adapters.model_spec.ModelSpec`
    (run on its threads), or a GGUF path or short name (resolved by :func:`resolve` with
    ``n_threads``); returns a cost record with ``bench``. ``lengths``: those of the
    ``long-context`` protocol (default: the full long-context domain's), measured
    ``long_runs`` times each (default ``runs``)."""
    from slm_tasks.adapters.llamacpp_engine import LlamaEngine
    from slm_tasks.errors import SLMError

    protocols = tuple(protocols)
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown or not protocols:
        raise SLMError(f"unknown bench protocol(s) {sorted(unknown)}; choose from {', '.join(PROTOCOLS)}")
    if runs < 1:
        raise SLMError(f"bench runs must be at least 1 (--runs); got {runs}")
    lengths = sorted(set(int(n) for n in (lengths or bench_long.domain_lengths()))) if LONG in protocols else []
    if any(n < 1 for n in lengths):
        raise SLMError(f"bench lengths must be positive token counts (--lengths); got {lengths}")
    short = tuple(p for p in protocols if p != LONG)
    spec = (resolve(model, n_threads) if isinstance(model, (str, os.PathLike)) else model).stored()
    n_ctx = max(SURVEY["n_ctx"], LLAMA_BENCH["pp"] + LLAMA_BENCH["tg"])
    engine = LlamaEngine(spec.path, max_length=n_ctx, n_batch=n_batch, n_threads=spec.threads, n_parallel=1, kv_slack=0)
    try:
        meter = CostMeter(
            spec.model_section(engine.describe()),
            describe_hardware(threads=engine.n_threads),
            software_versions(engine.llama_cpp_version, engine.build()),
        )
        rng = np.random.default_rng(seed)
        fns = {"survey": _survey_run, "llama-bench": _llama_bench_run}
        results: dict[str, list[dict]] = {p: [] for p in short}
        energy: dict[str, list[float]] = {p: [] for p in short}
        seconds: dict[str, list[float]] = {}
        started: dict[str, str] = {}
        bar = tqdm(
            total=(runs + 1) * len(short) + (long_runs or runs) * len(lengths) + bool(lengths),
            disable=not progress,
            desc=f"bench {spec.requested}",
            file=sys.stderr,
        )
        long = None
        try:
            for i in range(runs + 1 if short else 0):  # run 0 warms caches and is not reported
                for p in short:
                    if i == 1:
                        started[p] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    with meter.measure({} if i == 0 else {f"bench:{p}": 1.0}) as work:
                        t0, s0 = engine.prompt_tokens, engine.prefill_s
                        metrics, tests = fns[p](engine, rng)
                        work.prompt_tokens = engine.prompt_tokens - t0
                        work.prefill_s = engine.prefill_s - s0
                        work.generated_tokens = work.decode_tokens = TESTS[GEN_TEST[p]][2]
                        work.decode_s = tests[GEN_TEST[p]]
                    if i > 0:
                        results[p].append(metrics)
                        for name, s in tests.items():
                            seconds.setdefault(name, []).append(s)
                        energy[p].append(meter.tasks[f"bench:{p}"].energy_j)
                    bar.update(1)
                if pause_s and i < runs:
                    time.sleep(pause_s)
            if lengths:
                started[LONG] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                n_ctx_train = engine.n_ctx_train
                engine.close()  # each length gets a context of its own; this one would only add memory
                long = bench_long.measure(
                    spec, lengths, long_runs or runs, rng, n_ctx_train, pause_s, n_batch, tick=lambda: bar.update(1)
                )
        finally:
            bar.close()
        record = meter.record()
        record["tasks"] = {}  # bench runs are not tasks
        energy_ok = record["run"]["energy_j"] is not None
        per_protocol = {}
        for p, rows in results.items():
            entry = {k: stats(r[k] for r in rows) for k in rows[0]}
            cumulative = energy[p]
            entry["energy_j"] = stats(np.diff([0.0] + cumulative)) if energy_ok else None
            per_protocol[p] = entry
        long_rows = []
        if long is not None:
            per_protocol[LONG], long_rows = _long_entry(long, started[LONG])
        survey, lb = per_protocol.get("survey", {}), per_protocol.get("llama-bench", {})
        names = {
            "survey": "survey-p50-g50-c2048",
            "llama-bench": "llama-bench-pp512-tg128",
            LONG: "long-context-" + "-".join(map(str, lengths)),
        }
        record["bench"] = {
            "protocol": "+".join(names[p] for p in protocols),
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
            "tests": [
                _test_row(name, seconds[name], started[TESTS[name][0]])
                for p in short
                for name in TESTS
                if TESTS[name][0] == p
            ]
            + long_rows,
        }
        return record
    finally:
        engine.close()


def _long_entry(long: dict, started: str) -> tuple[dict, list[dict]]:
    """The ``long-context`` protocol's entry (per length: speeds with their spread, memory)
    and its table rows."""
    gen = long["gen_tokens"]
    lengths, rows = {}, []
    for n, m in long["lengths"].items():
        lengths[str(n)] = {
            "pp_tok_s": stats(n / s for s in m["pp_s"]),
            "tg_ms_per_token": stats(s * 1000 / gen for s in m["tg_s"]),
            **{k: m[k] for k in ("n_ctx", "kv_mib", "compute_mib", "output_mib", "rss_bytes")},
        }
        rows.append(_test_row(f"pp{n}", m["pp_s"], started, (LONG, n, 0, 0)))
        rows.append(_test_row(f"tg{gen} @ d{n}", m["tg_s"], started, (LONG, 0, gen, n)))
    entry = {
        "gen_tokens": gen,
        "runs": long["runs"],
        "warmup_runs": long["warmup_runs"],
        "lengths": lengths,
        "not_applicable": {str(n): why for n, why in long["not_applicable"].items()},
    }
    return entry, rows


def _output_format(value: str) -> str:
    if value in FORMATS:
        return value
    raise argparse.ArgumentTypeError(
        f"'{value}' is not an output format ({', '.join(FORMATS)}); write the cost record with --record FILE"
    )


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bench",
        help="runtime benchmark of a GGUF model (survey p50/g50 and llama-bench pp512/tg128)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="a .gguf path or a short name (smollm2-135m, gemma3-270m)")
    p.add_argument("--runs", type=int, default=5, help="measured runs per protocol (default 5)")
    p.add_argument("--pause", type=float, default=2.0, help="seconds to wait between runs (default 2)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all usable cores)")
    p.add_argument(
        "--protocol",
        default=",".join(DEFAULT_PROTOCOLS),
        help="comma-separated: survey, llama-bench, long-context (default: survey,llama-bench)",
    )
    p.add_argument(
        "--lengths",
        default=None,
        help="comma-separated prompt lengths in tokens for the long-context protocol "
        "(default: the long-context domain's, from its task YAMLs)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random prompt tokens")
    p.add_argument(
        "--output",
        "-o",
        type=_output_format,
        default="md",
        metavar="{md,csv,json}",
        help="format of the table printed on stdout, as llama-bench's -o (default md); "
        "the cost record goes to --record",
    )
    p.add_argument(
        "--record",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the slm-suite.cost/1 record (JSON) to FILE",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def _lengths(value: str | None) -> list[int] | None:
    from slm_tasks.errors import SLMError

    if not value:
        return None
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise SLMError(f"--lengths takes comma-separated token counts such as 1000,2000; got '{value}'") from None


def run(args) -> int:
    record = bench(
        args.model,
        runs=args.runs,
        pause_s=args.pause,
        n_threads=args.threads,
        protocols=[x.strip() for x in args.protocol.split(",") if x.strip()],
        seed=args.seed,
        lengths=_lengths(args.lengths),
        progress=not args.no_progress,
    )
    sys.stdout.write(render(record, args.output))
    if args.record:
        from slm_tasks.run_output import write_text_atomic  # a write error: one line, exit 2

        write_text_atomic(args.record, json.dumps(record, indent=2) + "\n", fix="choose another --record")
        print(f"wrote {args.record}", file=sys.stderr)  # stdout stays parseable csv/json
    return 0


def main(argv=None) -> int:
    """``python -m slm_tasks.adapters.bench MODEL ...`` (same options as ``slm-suite bench``)."""
    parser = argparse.ArgumentParser(prog="slm-suite")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
