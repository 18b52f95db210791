"""The worker side of a cluster run: the Ray actor that holds one copy of the model, and how
a request type's work is cut into shards.

A worker answers a shard the way a resumed single-machine run answers what its store
lacks: the backend sees every request of the call and plans them as a plain run does
(context groups sorted by context, so a task and its shared few-shot prefix stay together),
then computes only the shard's units, rebuilding before each the prefix cache a plain run
would hold there (:meth:`SLMBackend._resume_at`). Answers are therefore those of one
machine. The driver cuts the plan into shards of whole units: contiguous runs in plan
order, so that a worker's prefix cache works as on one machine, and no unit is computed
twice. The actor keeps no response store (the driver does); per shard it returns the
answers, the seconds each took, and its cost meter's tallies.
"""

from __future__ import annotations

import importlib
import os
import socket
import time
import uuid

from slm_tasks.adapters import scoring
from slm_tasks.errors import SLMError

GEN_TOKEN_COST = 10  # a generated token costs about as much as 10 prompt tokens (CPU decode vs prefill)
SHARDS_PER_WORKER = 8  # enough shards that a slow node or a retry does not leave the others idle
MIN_SHARD_TOKENS = 500  # below this, a shard's fixed cost (one Ray call, one rebuilt cache) shows
MAX_SHARD_REQUESTS = 1_000  # a retried shard redoes at most this much; one store commit holds it
CALLS = frozenset({"apply_chat_template", "chat_template", "tok_encode", "tok_decode", "_loglikelihood_tokens"})


def plan_shards(
    families: list[tuple[list[int], int]], workers: int, done=frozenset(), target: float | None = None
) -> list[list[int]]:
    """Cut the plan's families (request indices, token weight; in plan order) into shards:
    contiguous runs of about ``target`` tokens; requests in ``done`` are left out."""
    todo = [([i for i in members if i not in done], w) for members, w in families]
    todo = [(m, w) for m, w in todo if m]
    if target is None:
        target = max(sum(w for _, w in todo) / (max(workers, 1) * SHARDS_PER_WORKER), MIN_SHARD_TOKENS)
    shards, cur, acc = [], [], 0
    for members, w in todo:
        if cur and (acc + w > target or len(cur) + len(members) > MAX_SHARD_REQUESTS):
            shards.append(cur)
            cur, acc = [], 0
        cur += members
        acc += w
    if cur:
        shards.append(cur)
    return shards


def _families(units: list[tuple[list[int], int]], n: int) -> list[tuple[list[int], int]]:
    """Units merged where they share a request (a rolling request's windows), in plan order."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for members, _ in units:
        for i in members[1:]:
            parent[root(i)] = root(members[0])
    order, groups = [], {}
    for members, w in units:
        if not members:
            continue
        r = root(members[0])
        if r not in groups:
            groups[r] = [[], 0]
            order.append(r)
        groups[r][0].extend(members)
        groups[r][1] += w
    out = [(sorted(set(groups[r][0])), groups[r][1]) for r in order]
    seen = {i for members, _ in out for i in members}
    # a request no unit holds (a rolling request without windows) is still answered, alone
    return out + [([i], 1) for i in range(n) if i not in seen]


def _worker_class(cls):
    """``cls`` as a worker runs it: the identity that keys the store is kept for the driver
    instead of opening a store; the requests outside the shard count as stored; the plan's
    units can be recorded; token encodings are kept while one call's requests are worked on."""

    class Worker(cls):
        cluster_identity: dict | None = None
        recording: list | None = None
        skip: frozenset[int] | set[int] = frozenset()
        memo: dict | None = None
        last_seconds: list[float] | None = None

        def _open_store(self, location, identity) -> None:
            self.cluster_identity = dict(identity)

        def _serve(self, kind, requests, compute):
            answers: list = [None] * len(requests)
            seconds = [0.0] * len(requests)

            def emit(j: int, answer, s: float) -> None:
                answers[j] = answer
                seconds[j] = s

            compute(list(requests), emit, self.skip)
            self.last_seconds = seconds
            return answers

        def _score_units(self, plan):
            units = super()._score_units(plan)
            if self.recording is not None:
                self.recording += [
                    ([i for it in u for i in it.members], sum(len(it.context) + len(it.continuation) for it in u))
                    for u in units
                ]
            return units

        def _generation_units(self, jobs):
            units = super()._generation_units(jobs)
            if self.recording is not None:
                self.recording += [
                    ([j.index for j in u], sum(len(j.ids) + GEN_TOKEN_COST * j.max_gen for j in u)) for u in units
                ]
            return units

        def encode_request(self, context, continuation):
            key = ("pair", context, continuation)
            if self.memo is None:
                return super().encode_request(context, continuation)
            if key not in self.memo:  # tuples: the plan copies nothing it cannot change
                memo, self.memo = self.memo, None  # the pair is kept, not the texts it was made of
                try:
                    ctx, cont = super().encode_request(context, continuation)
                finally:
                    self.memo = memo
                memo[key] = tuple(ctx), tuple(cont)
            return self.memo[key]

        def tok_encode(self, string, add_special_tokens=None, **kwargs):
            if kwargs or self.memo is None:
                return super().tok_encode(string, add_special_tokens, **kwargs)
            key = ("text", string, add_special_tokens)
            if key not in self.memo:
                self.memo[key] = super().tok_encode(string, add_special_tokens)
            return list(self.memo[key])

    Worker.__name__ = Worker.__qualname__ = f"Cluster{cls.__name__}"
    return Worker


class ShardWorker:
    """The Ray actor: one backend, one model, for the life of the run."""

    def __init__(self, backend: str, model_args: dict):
        import ray

        self.incarnation = uuid.uuid4().hex  # a restarted actor is a new incarnation
        self.place = {
            "host": socket.gethostname(),
            "ip": ray.util.get_node_ip_address(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
        }
        self.error = None
        self.lm = None
        self.call_id = None
        self.requests: list = []
        t0 = time.perf_counter()
        module, _, name = backend.partition(":")
        try:
            self.lm = _worker_class(getattr(importlib.import_module(module), name))(**model_args)
        except SLMError as exc:  # reported by describe() as one line; the actor stays up to say it
            self.error = str(exc)
        self.load_s = time.perf_counter() - t0

    def describe(self) -> dict:
        info = {**self.place, "incarnation": self.incarnation, "load_s": self.load_s, "error": self.error}
        lm = self.lm
        if lm is None:
            return info
        run = lm.meter.record()["run"]
        tok = getattr(lm, "tokenizer", None)
        info.update(
            identity=lm.cluster_identity,
            model=lm.meter.model,
            hardware=lm.meter.hardware,
            software=lm.meter.software,
            energy_source=run["energy_source"],
            energy_unavailable_reason=run["energy_unavailable_reason"],
            backend_name=lm.backend_name,
            eot_token_id=lm.eot_token_id,
            prefix_token_id=lm.prefix_token_id,
            max_length=lm.max_length,
            tokenizer_name=lm.tokenizer_name,
            # what lm-eval copies into the results file from a model's tokenizer
            tokenizer=None
            if tok is None or not hasattr(tok, "pad_token")
            else {
                k: getattr(tok, k, None)
                for k in ("pad_token", "pad_token_id", "eos_token", "eos_token_id", "bos_token", "bos_token_id")
            },
        )
        return info

    def _load(self, kind: str, call_id: str, ref: list) -> list:
        """The call's requests (all of them, as lm-eval handed them to the driver)."""
        if call_id != self.call_id:
            import ray
            from lm_eval.api.instance import Instance

            items = ray.get(ref[0])
            self.requests = [Instance(kind, {}, tuple(a), 0, metadata=(t, d, 1)) for a, t, d in items]
            self.call_id = call_id
            self.lm.memo = {}
        return self.requests

    def plan(self, kind: str, call_id: str, ref: list) -> list[tuple[list[int], int]]:
        """The plan a plain run makes of the call: families of request indices, in order."""
        lm, requests = self.lm, self._load(kind, call_id, ref)
        lm.recording, lm.skip = [], set(range(len(requests)))
        try:
            getattr(lm, kind)(requests, disable_tqdm=True)  # every request counts as stored: nothing runs
            units = lm.recording
        finally:
            lm.recording, lm.skip = None, frozenset()
        if kind == "loglikelihood_rolling":  # units hold windows: name their requests
            _, owners, _ = scoring.rolling_windows(requests, lm.tok_encode, lm.prefix_token_id, lm.score_length)
            units = [([owners[w] for w in members], weight) for members, weight in units]
        return _families(units, len(requests))

    def run(self, kind: str, call_id: str, ref: list, shard: list[int]) -> dict:
        """Answer the requests ``shard`` (indices into the call's requests)."""
        lm, requests = self.lm, self._load(kind, call_id, ref)
        mine = set(shard)
        lm.skip = set(range(len(requests))) - mine
        lm.meter.take()  # book only this shard
        t0 = time.perf_counter()
        try:
            answers = getattr(lm, kind)(requests, disable_tqdm=True)
        finally:
            lm.skip = frozenset()
        busy = time.perf_counter() - t0
        run = lm.meter.record()["run"]
        return {
            "answers": [answers[i] for i in shard],
            "seconds": [lm.last_seconds[i] for i in shard],
            "cost": lm.meter.take(),
            "busy_s": busy,
            "peak_rss_bytes": run["peak_rss_bytes"],
            "peak_gpu_bytes": run["peak_gpu_bytes"],
            "incarnation": self.incarnation,
        }

    def call(self, name: str, *args, **kwargs):
        if name not in CALLS:
            raise ValueError(f"{name} is not a model call a worker answers")
        return getattr(self.lm, name)(*args, **kwargs)

    def close(self) -> None:
        if self.lm is not None:
            self.lm.close()
