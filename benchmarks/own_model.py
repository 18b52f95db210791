"""Checkpoint folders through slm-llamacpp: conversion time, disk use, and per-document agreement.

For each embedded model: transformers writes a checkpoint folder from the GGUF (fp32
safetensors, ``slm_tasks.adapters.export``); slm-llamacpp converts it back with llama.cpp's
own converter (timed, into a fresh cache); then ``slm-suite run`` scores the lite
multiple-choice tasks at ``--limit`` on the folder and on the short name, and every document's
choice and log-likelihoods are compared (both score an F16 copy of the same weights).

    SLM_DATA_DIR=../shared/hub python benchmarks/own_model.py [--limit 30] [--models smollm2-135m,gemma3-270m]

Prints one Markdown table (benchmarks/RESULTS-own-model.md holds the committed one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = "slm_commonsense_lite,slm_problem_solving_lite"  # the lite profile's multiple-choice tasks


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def samples(out: Path) -> dict:
    docs = {}
    for f in out.rglob("samples_*.jsonl"):
        task = f.stem.removeprefix("samples_").rsplit("_", 1)[0]
        for line in f.read_text().splitlines():
            s = json.loads(line)
            docs[(task, s["doc_id"])] = (s["acc"], [float(r[0]) for r in s["filtered_resps"]])
    return docs


def run(model, out: Path, limit: int) -> float:
    t0 = time.perf_counter()
    # a store of their own: both runs compute every request, in the same order and batches
    # (answers stored by an earlier run of another --limit were computed in other batches)
    store = out.parent / f"store-{out.name}.sqlite"
    argv = ["slm-suite", "run", "--model", str(model), "--tasks", TASKS, "--limit", str(limit), "--no-bench"]
    argv += ["--store", str(store)]
    subprocess.run([*argv, "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def measure(name: str, limit: int, work: Path) -> dict:
    from slm_tasks.adapters import model_spec
    from slm_tasks.adapters.convert import converted_gguf
    from slm_tasks.adapters.export import export_gguf

    t0 = time.perf_counter()
    folder = export_gguf(name, work / name, dtype="float32")
    export_s = time.perf_counter() - t0
    from slm_tasks.adapters import hf_converter

    converter = hf_converter.converter_dir()  # unpacked once into the usual cache (by setup)
    hf_converter.converter_dir = lambda: converter
    os.environ["SLM_SUITE_CACHE"] = str(work / f"cache-{name}")  # a fresh cache: the first use is timed
    t0 = time.perf_counter()
    gguf, info = converted_gguf(folder, folder.name, progress=False)
    convert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    converted_gguf(folder, folder.name, progress=False)  # the second use: a cache hit
    again_s = time.perf_counter() - t0
    model_spec._MEMO.clear()
    del os.environ["SLM_SUITE_CACHE"]
    # the runs: the folder (converted again into the usual cache, untimed) and the GGUF
    ours = samples_of(folder, work / f"run-{name}-folder", limit)
    ref = samples_of(name, work / f"run-{name}-gguf", limit)
    same = [k for k in ref if k in ours and abs(ours[k][0] - ref[k][0]) < 1e-6]
    argmax_same = [k for k in ref if k in ours and _argmax(ours[k][1]) == _argmax(ref[k][1])]
    delta = max(
        (abs(a - b) for k in ref if k in ours for a, b in zip(ours[k][1], ref[k][1], strict=True)), default=None
    )
    return {
        "model": name,
        "folder_bytes": size(folder),
        "gguf_bytes": size(gguf),
        "precision": info["precision"],
        "export_s": export_s,
        "convert_s": convert_s,
        "again_s": again_s,
        "docs": len(ref),
        "docs_both": sum(1 for k in ref if k in ours),
        "same_acc": len(same),
        "same_choice": len(argmax_same),
        "max_delta": delta,
    }


def samples_of(model, out: Path, limit: int) -> dict:
    run(model, out, limit)
    return samples(out)


def _argmax(xs):
    return max(range(len(xs)), key=xs.__getitem__)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--models", default="smollm2-135m,gemma3-270m")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="own-model-") as tmp:
        for name in args.models.split(","):
            rows.append(measure(name, args.limit, Path(tmp)))
            print(json.dumps(rows[-1]), file=sys.stderr)
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores; --limit {args.limit}, tasks {TASKS}\n"
    )
    print(
        "| model | checkpoint folder | converted GGUF | export (transformers) | conversion | second use "
        "| documents | same answer | same choice | max abs. log-lik. difference |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['folder_bytes'] / 1e6:.0f} MB fp32 | {r['gguf_bytes'] / 1e6:.0f} MB {r['precision']} "
            f"| {r['export_s']:.1f} s | {r['convert_s']:.1f} s | {r['again_s']:.2f} s | {r['docs']} "
            f"| {r['same_acc']}/{r['docs_both']} | {r['same_choice']}/{r['docs_both']} | {r['max_delta']:.2e} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
