"""The bench's ``long-context`` protocol: prefill speed, decode speed and memory at the
long-context domain's lengths.

The SLM survey reports what a long prompt costs in memory (KV cache and compute buffer) as
well as in time. For each length a context of exactly that many cells (plus the decode
steps) is created, so the memory figures are those of a model serving that length:

* ``kv_mib``, ``compute_mib``, ``output_mib``: the buffers llama.cpp reports when it creates
  the context (its own log lines, summed over caches);
* ``rss_bytes``: the process's resident memory after the last prefill at that length (the
  earlier lengths' contexts are freed first);
* per run: the prefill of ``length`` random tokens in batches of ``n_batch`` (test
  ``pp<length>``), then ``GEN_TOKENS`` greedy decode steps on top of it (test
  ``tg16 @ d<length>``, llama-bench's name for decoding at a depth). One warm-up run, at the
  shortest length only: a prefill of thousands of tokens warms the caches within its first
  batches, and the long lengths are what make this protocol expensive (SmolLM2-135M's 8,000
  tokens take about 50 s on two cores).

The lengths are the long-context tasks' own (their YAML ``metadata.lc_lengths``): the cost
record then describes the cells the domain scores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np
import psutil
import yaml

GEN_TOKENS = 16


def domain_lengths(configs: dict | None = None) -> list[int]:
    """The lengths of the long-context tasks: from ``configs`` (lm-eval's ``results["configs"]``,
    task -> config) when given, else from the full domain's task YAMLs."""
    if configs is None:
        from slm_tasks.paths import task_dir

        configs = {p.stem: yaml.safe_load(p.read_text()) for p in (task_dir() / "long_context").glob("slm_niah_*.yaml")}
        configs = {k: v for k, v in configs.items() if not k.endswith("_lite")}
    found = {int(n) for c in configs.values() for n in ((c or {}).get("metadata") or {}).get("lc_lengths") or ()}
    return sorted(found)


def random_tokens(engine, n: int, rng: np.random.Generator) -> list[int]:
    """``n`` random token ids, clear of the low ids where special tokens live (as llama-bench)."""
    return [int(t) for t in rng.integers(low=1000 if engine.n_vocab > 2000 else 0, high=engine.n_vocab, size=n)]


def not_applicable(length: int, n_ctx_train: int) -> str | None:
    if length + GEN_TOKENS > n_ctx_train:
        return f"{length} + {GEN_TOKENS} tokens exceed the model's trained context of {n_ctx_train}"
    return None


def measure(
    spec,
    lengths: Iterable[int],
    runs: int,
    rng: np.random.Generator,
    n_ctx_train: int,
    pause_s: float = 0.0,
    n_batch: int = 512,
    tick: Callable[[], None] = lambda: None,
) -> dict:
    """Seconds per run and memory per length for ``spec`` (a stored-format ModelSpec):
    ``{"lengths": {L: {...}}, "not_applicable": {L: reason}}`` (a length past ``n_ctx_train``,
    the model's trained context, gets no context at all); ``tick`` is called once per
    run (the warm-up included: ``runs + 1`` calls for the first length, ``runs`` for the rest)."""
    from slm_tasks.adapters.llamacpp_engine import LlamaEngine
    from slm_tasks.adapters.llamacpp_lib import buffer_sizes, captured_log

    proc = psutil.Process()
    out: dict = {"gen_tokens": GEN_TOKENS, "runs": runs, "warmup_runs": 1, "lengths": {}, "not_applicable": {}}
    warmup = 1
    for length in sorted(set(int(n) for n in lengths)):
        reason = not_applicable(length, n_ctx_train)
        if reason:
            out["not_applicable"][length] = reason
            continue
        with captured_log() as log:
            engine = LlamaEngine(
                spec.path,
                max_length=length + GEN_TOKENS,
                n_batch=n_batch,
                n_threads=spec.threads,
                n_parallel=1,
                kv_slack=0,
                prefix_cache=False,
            )
        try:
            pp, tg = [], []
            for i in range(runs + warmup):  # a warm-up run is not reported
                prompt = random_tokens(engine, length, rng)
                engine.clear()
                t0 = time.perf_counter()
                token = int(engine.set_prefix(prompt).argmax())
                t1 = time.perf_counter()
                for _ in range(GEN_TOKENS):
                    token = int(engine.step(token).argmax())
                t2 = time.perf_counter()
                if i >= warmup:
                    pp.append(t1 - t0)
                    tg.append(t2 - t1)
                tick()
                if pause_s and i < runs + warmup - 1:
                    time.sleep(pause_s)
            warmup = 0
            buffers = buffer_sizes(log)
            out["lengths"][length] = {
                "n_ctx": engine.kv_size,
                "kv_mib": buffers["kv"],
                "compute_mib": buffers["compute"],
                "output_mib": buffers["output"],
                "rss_bytes": proc.memory_info().rss,
                "pp_s": pp,
                "tg_s": tg,
            }
        finally:
            engine.close()
    return out
