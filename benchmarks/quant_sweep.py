"""The SLM survey's runtime claims about quantisation, checked on this CPU.

For each embedded model: make the sweep's formats (timing llama.cpp's quantiser for each, into
a scratch folder, so the cache does not hide it), bench each format the way the sweep does
(``slm-suite bench`` in a fresh process: the survey's pp50/tg50 and llama-bench's
pp512/tg128), and print each format's prefill and decode latency relative to F16 at a
50-token prompt and at 512, beside the survey's statements (Lu et al., v3 §4):

* "Q4_K_M is the best: prefill latency falls about 50% on average";
* "decode latency falls 17–75%";
* "Q3_K and Q6_K can be slower than FP16 on prefill near 50 prompt tokens".

    python benchmarks/quant_sweep.py [--models smollm2-135m,gemma3-270m] [--runs 5] [--threads N] \
        [--scratch DIR]

Prints Markdown (benchmarks/RESULTS-quant.md is its output, with the command).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from slm_tasks.adapters.quantise import quantise
from slm_tasks.quant_report import runtime
from slm_tasks.quant_sweep import DEFAULT_FORMATS, FormatRun, bench_formats, formats_of, working_source


def time_quantiser(source: Path, formats, threads) -> dict[str, float]:
    """Seconds llama.cpp's quantiser takes for each format, written to a scratch folder."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for f in formats:
            t0 = time.perf_counter()
            path, _ = quantise(source, f, out=Path(tmp) / f"{f}.gguf", threads=threads)
            out[f] = time.perf_counter() - t0
            path.unlink()
    return out


def pp50_runs(record: dict | None) -> list[float]:
    """Every measured run's pp50 tok/s of a bench record (the survey protocol)."""
    entry = (((record or {}).get("bench") or {}).get("protocols") or {}).get("survey") or {}
    return list((entry.get("pp_tok_s") or {}).get("values") or [])


def compared(runs: list[float], base: list[float]) -> str | None:
    """ "slower" / "faster" than the base only when the runs do not overlap, else "overlap"."""
    if not runs or not base:
        return None
    if max(runs) < min(base):
        return "slower"
    if min(runs) > max(base):
        return "faster"
    return "overlap"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def fmt(x, spec=".2f"):
    return "—" if x is None else format(x, spec)


def model_table(model: str, formats, runs: int, threads, scratch: Path) -> tuple[list[str], dict]:
    from slm_tasks.adapters.quantise import quantise as make
    from slm_tasks.adapters.store_keys import model_identity

    spec, source, origin = working_source(model, threads)
    quantise_s = time_quantiser(source, formats, threads)
    made = []
    for f in formats:
        path, _ = make(source, f, threads=threads)
        made.append(FormatRun(f, path, model_identity(path), quantise_s[f]))
    bench_formats(made, scratch / model, runs, threads)
    rt = {r.format: runtime(r.bench) for r in made}
    base = rt.get("F16") or {}
    f16_bench = next((x.bench for x in made if x.format == "F16"), None)
    # latency per prompt (prefill) = tokens / (tok/s): the ratio of latencies is the inverse of the rates'
    lines = [
        f"### {model}",
        "",
        f"Source: {origin}.",
        "",
        "| format | size (MB) | quantise (s) | pp50 tok/s | pp512 tok/s | tg50 ms/tok | tg128 ms/tok | "
        "prefill latency vs F16 @50 | @512 | decode latency vs F16 @50 | @128 | peak RSS (MB) |",
        "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rel = {}
    for r in made:
        x = rt[r.format]
        rel[r.format] = {
            "pp50": ratio(base.get("pp50_tok_s"), x["pp50_tok_s"]),
            "pp512": ratio(base.get("prefill_tok_s"), x["prefill_tok_s"]),
            "tg50": ratio(x["tg50_ms_per_token"], base.get("tg50_ms_per_token")),
            "tg128": ratio(x["decode_ms_per_token"], base.get("decode_ms_per_token")),
            "pp50_vs_f16": compared(pp50_runs(r.bench), pp50_runs(f16_bench)),
        }
        q = rel[r.format]
        lines.append(
            f"| {r.format} | {r.file_bytes / 1e6:.1f} | {r.quantise_s:.1f} | {fmt(x['pp50_tok_s'], '.0f')} | "
            f"{fmt(x['prefill_tok_s'], '.0f')} | {fmt(x['tg50_ms_per_token'])} | "
            f"{fmt(x['decode_ms_per_token'])} | "
            f"{fmt(q['pp50'])} | {fmt(q['pp512'])} | {fmt(q['tg50'])} | {fmt(q['tg128'])} | "
            f"{fmt((x['peak_memory_bytes'] or 0) / 1e6, '.0f')} |"
        )
    return lines, rel


def claims(rel_by_model: dict) -> list[str]:
    """The survey's statements beside what this machine shows."""
    out = ["### The survey's statements on this CPU", "", "| statement | here | holds? |", "|:---|:---|:---|"]
    q4 = {m: r.get("Q4_K_M", {}) for m, r in rel_by_model.items()}
    pre = [1 - v for r in q4.values() for v in (r.get("pp50"), r.get("pp512")) if v is not None]
    mean_fall = sum(pre) / len(pre) if pre else None
    here = "; ".join(
        f"{m}: {fmt(100 * (1 - (r.get('pp50') or 1)), '.0f')}% @50, "
        f"{fmt(100 * (1 - (r.get('pp512') or 1)), '.0f')}% @512"
        for m, r in q4.items()
    )
    holds = "—" if mean_fall is None else ("yes" if 0.35 <= mean_fall <= 0.65 else "no")
    mean = fmt(None if mean_fall is None else 100 * mean_fall, ".0f")
    out.append(f"| Q4_K_M: prefill latency falls about 50% on average | {here} (mean {mean}%) | {holds} |")
    dec = [1 - v for r in q4.values() for v in (r.get("tg50"), r.get("tg128")) if v is not None]
    here = "; ".join(
        f"{m}: {fmt(100 * (1 - (r.get('tg50') or 1)), '.0f')}% @50, "
        f"{fmt(100 * (1 - (r.get('tg128') or 1)), '.0f')}% @128"
        for m, r in q4.items()
    )
    holds = "—" if not dec else ("yes" if all(0.17 <= d <= 0.75 for d in dec) else "no")
    out.append(f"| Q4_K_M: decode latency falls 17–75% | {here} | {holds} |")
    slow = []
    for m, r in rel_by_model.items():
        for f in ("Q3_K_M", "Q6_K"):
            q = r.get(f) or {}
            if q.get("pp50") is not None:
                slow.append((m, f, q["pp50"], q.get("pp50_vs_f16")))
    here = "; ".join(f"{m} {f}: {v:.2f}x F16's ({c or 'no runs'})" for m, f, v, c in slow)
    # a median ratio above 1 is not "slower" while the runs overlap: the verdict needs every
    # run of the format slower than every run of F16
    shown = [c for *_, c in slow]
    holds = (
        "—"
        if not slow
        else "yes"
        if "slower" in shown
        else "no"
        if all(c == "faster" for c in shown)
        else "not shown (runs overlap)"
    )
    out.append(f"| Q3_K and Q6_K can be slower than FP16 on prefill near 50 tokens | {here} | {holds} |")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="smollm2-135m,gemma3-270m")
    p.add_argument("--formats", default=",".join(DEFAULT_FORMATS))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--scratch",
        default=None,
        help="folder for the bench records (kept: a rerun reuses each format's record of the same "
        "file, runs and threads, so a long benchmark can be run in pieces); default a temporary one",
    )
    a = p.parse_args(argv)
    formats = formats_of(a.formats.split(","))
    lines, rel = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = a.scratch or tmp
        for m in a.models.split(","):
            table, rel[m] = model_table(m, formats, a.runs, a.threads, Path(scratch))
            print("\n".join(table + [""]), flush=True)  # each model's table as soon as it is measured
    print("\n".join(lines + claims(rel)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
