"""Scale-out past one machine on Ray: model_args ``ray=ADDRESS`` (``slm-suite run --ray``).

The driver (the process lm-eval runs in) keeps everything a plain run has: lm-eval, the
response store, the cost record, one progress bar. Only the engine work moves: lm-eval
hands the model each request type's requests, :meth:`SLMBackend._serve` takes out what the
store already holds, the workers plan the call as one machine would, and the plan is cut
into shards (:func:`cluster_worker.plan_shards`), each answered by a Ray actor that holds the
model once (:class:`cluster_worker.ShardWorker`:
one per node with the node's cores for CPU engines, one per ``tensor_parallel_size`` GPUs
for vLLM). Answers come back to the driver, which stores them and hands them to lm-eval, so
metrics are computed once over the whole run, as on one machine.

Faults: a worker process that dies mid-shard is restarted by Ray and its shards are retried
(``max_restarts`` / ``max_task_retries``); a worker that stays dead has its shards given to
the others. Each request is answered and booked once, whatever arrives twice; the store
keeps one answer per request key. A killed driver resumes from the store. See
docs/cluster.md. The workers, their shards and the cluster's cost record are
:mod:`slm_tasks.adapters.cluster_pool`; this module is the model lm-eval talks to.
"""

from __future__ import annotations

from types import SimpleNamespace

from slm_tasks.adapters.backend import SLMBackend
from slm_tasks.adapters.cluster_connect import ClusterError, wanted
from slm_tasks.adapters.cluster_pool import GPU_BACKENDS, ClusterMeter, WorkerPool
from slm_tasks.adapters.cost import software_versions


class ClusterLM(SLMBackend):
    """The driver's model: any backend, its engine work on the cluster's workers (built around
    ``backend`` by adapters/make.py when model_args name ``ray=``)."""

    def __init__(self, backend: type[SLMBackend], model_args: dict):
        super().__init__()
        args = dict(model_args)
        address = wanted(args.pop("ray", None))
        workers = args.pop("ray_workers", None)
        location = args.pop("store", None)
        if backend.backend_name in GPU_BACKENDS and int(args.get("data_parallel_size") or 1) > 1:
            raise ClusterError(
                "ray= already runs one vLLM engine per GPU (per tensor_parallel_size GPUs) of the "
                "cluster: leave data_parallel_size out, or pass ray_workers=N"
            )
        self.backend_name = backend.backend_name
        self.pool = WorkerPool(backend, args, address, int(workers) if workers else None)
        info = self.pool.info
        mine = software_versions(None, None)
        theirs = info["software"]
        if (mine["slm_suite"], mine["lm_eval"]) != (theirs.get("slm_suite"), theirs.get("lm_eval")):
            raise ClusterError(
                f"{self.pool.workers[0].name} runs slm-suite {theirs.get('slm_suite')} / lm-eval "
                f"{theirs.get('lm_eval')}, this driver slm-suite {mine['slm_suite']} / lm-eval "
                f"{mine['lm_eval']}: install the same versions on every node"
            )
        self.meter = ClusterMeter(self.pool)
        self._open_store(location, info["identity"])

    # --- what lm-eval reads from a model -------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.pool.info["eot_token_id"]

    @property
    def prefix_token_id(self) -> int:
        return self.pool.info["prefix_token_id"]

    @property
    def max_length(self) -> int:
        return self.pool.info["max_length"]

    @property
    def tokenizer_name(self) -> str:
        return self.pool.info["tokenizer_name"]

    @property
    def tokenizer(self):
        tok = self.pool.info.get("tokenizer")
        if tok is None:
            raise AttributeError("tokenizer")
        return SimpleNamespace(**tok)

    def tok_encode(self, string: str, **kwargs) -> list[int]:
        return self.pool.call("tok_encode", string, **kwargs)

    def tok_decode(self, tokens, **kwargs) -> str:
        return self.pool.call("tok_decode", list(tokens), **kwargs)

    def chat_template(self, chat_template=False):
        return self.pool.call("chat_template", chat_template)

    def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
        return self.pool.call("apply_chat_template", chat_history, add_generation_prompt)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        return self.pool.call("_loglikelihood_tokens", list(requests), True)

    # --- the requests ----------------------------------------------------------------------
    def _dispatch(self, kind: str, disable_tqdm: bool):
        def compute(reqs, emit, stored):
            with self._progress(len(reqs) - len(stored), kind, disable_tqdm) as bar:
                self.pool.run(
                    kind,
                    reqs,
                    stored,
                    emit,
                    bar,
                    self.store.flush if self.store is not None else lambda: 0,
                    self.meter.add,
                )

        return compute

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return self._serve("loglikelihood", requests, self._dispatch("loglikelihood", disable_tqdm))

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self._serve("loglikelihood_rolling", requests, self._dispatch("loglikelihood_rolling", disable_tqdm))

    def generate_until(self, requests, disable_tqdm: bool = False):
        return self._serve("generate_until", requests, self._dispatch("generate_until", disable_tqdm))

    def _close_engine(self) -> None:
        self.pool.close()
