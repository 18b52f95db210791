"""The driver's pool of Ray workers for a ``ray=`` run (:mod:`slm_tasks.adapters.cluster`):
starting one worker per node (per ``tensor_parallel_size`` GPUs for vLLM), feeding them the
shards of each call, retrying the shards of a worker that died, and the cluster's cost record
(the workers' tallies added up, each worker's beside them)."""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque

from slm_tasks.adapters.backend import SLMBackend
from slm_tasks.adapters.cluster_connect import ClusterError, connect, import_ray, placements
from slm_tasks.adapters.cluster_worker import ShardWorker, plan_shards
from slm_tasks.adapters.cost import CostMeter
from slm_tasks.errors import SLMError

log = logging.getLogger(__name__)

RESTARTS = 3  # per worker: Ray restarts a dead worker process this often, retrying its shards
IN_FLIGHT = 2  # shards queued per worker: the next one is there when the current one ends
START_TIMEOUT_S = 900.0
GPU_BACKENDS = {"slm-vllm"}


class Summed:
    """Stands in for the driver's energy reader: the workers measured, the driver adds up."""

    def __init__(self, source: str):
        self.source = source

    def joules(self) -> float:
        return 0.0


class _Worker:
    """The driver's view of one worker: its actor, where it runs, and what it did."""

    def __init__(self, index: int, actor, place: dict):
        self.index, self.actor, self.place = index, actor, place
        self.created = time.time()
        self.info: dict = {}
        self.incarnations: set[str] = set()
        self.shards = 0
        self.busy_s = 0.0
        self.alive = True
        self.in_flight = 0
        self.meter: CostMeter | None = None
        self.peak_gpu: int | None = None

    @property
    def name(self) -> str:
        return f"worker {self.index} on {self.info.get('host') or self.place.get('host')}"

    def start(self, info: dict) -> None:
        self.info = info
        self.incarnations.add(info["incarnation"])
        energy = info.get("energy_source")
        self.meter = _WorkerMeter(
            info["model"],
            info["hardware"],
            info["software"],
            energy=(Summed(energy), None) if energy else (None, info.get("energy_unavailable_reason")),
        )
        self.meter.peak_rss = 0

    def book(self, out: dict) -> None:
        self.incarnations.add(out["incarnation"])
        self.shards += 1
        self.busy_s += out["busy_s"]
        self.meter.add(out["cost"])
        self.meter.peak_rss = max(self.meter.peak_rss, out["peak_rss_bytes"] or 0)
        if out.get("peak_gpu_bytes") is not None:
            self.peak_gpu = max(self.peak_gpu or 0, out["peak_gpu_bytes"])

    def record(self, now: float) -> dict:
        rec = self.meter.record()
        rec["run"]["peak_gpu_bytes"] = self.peak_gpu
        return {
            "worker": self.index,
            "host": self.info.get("host"),
            "address": self.info.get("ip"),
            "node_id": self.info.get("node_id"),
            "resources": {"CPU": self.place["cpus"], "GPU": self.place["gpus"]},
            "hardware": rec["hardware"],
            "run": rec["run"],
            "shards": self.shards,
            "restarts": len(self.incarnations) - 1,
            "load_s": round(self.info.get("load_s", 0.0), 3),
            "busy_s": round(self.busy_s, 6),
            "machine_s": round(now - self.created, 3),
        }


class _WorkerMeter(CostMeter):
    """One worker's figures, from the tallies its shards brought back."""

    def sample_memory(self) -> int:
        return self.peak_rss


class WorkerPool:
    """The run's workers: started once, fed shards, given back at the end."""

    def __init__(self, backend: type[SLMBackend], model_args: dict, address: str, workers: int | None):
        ray = import_ray()
        self.address = connect(address)
        self.started = time.time()
        self.last_answer: float | None = None
        gpu = backend.backend_name in GPU_BACKENDS and ray.cluster_resources().get("GPU", 0) > 0
        tp = int(model_args.get("tensor_parallel_size") or 1)
        where = placements(ray.nodes(), gpu, tp, workers)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        remote = ray.remote(ShardWorker)
        path = f"{backend.__module__}:{backend.__qualname__}"
        self.workers = []
        for i, place in enumerate(where):
            args = dict(model_args)
            if not gpu and backend.backend_name == "slm-llamacpp":
                args.setdefault("n_threads", place["cpus"])
            actor = remote.options(
                num_cpus=place["cpus"],
                num_gpus=place["gpus"],
                max_restarts=RESTARTS,
                max_task_retries=RESTARTS,
                # pinned: a restarted worker comes back on its node, never on top of another worker
                scheduling_strategy=NodeAffinitySchedulingStrategy(place["node"], soft=False),
            ).remote(path, args)
            self.workers.append(_Worker(i, actor, place))
        self._start(ray)

    def _start(self, ray) -> None:
        refs = {w.actor.describe.remote(): w for w in self.workers}
        ready, waiting = ray.wait(list(refs), num_returns=len(refs), timeout=START_TIMEOUT_S)
        if waiting:
            raise ClusterError(
                f"{len(waiting)} of {len(refs)} workers did not start within {START_TIMEOUT_S:.0f} s "
                "(the cluster may lack the CPUs/GPUs they ask for; `ray status` shows them): "
                "free them, or pass ray_workers=N for fewer workers"
            )
        for ref in ready:
            w = refs[ref]
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError as exc:
                raise ClusterError(f"{w.name} did not start: {str(exc).splitlines()[0][:300]}") from None
            if info["error"]:
                raise ClusterError(f"{w.name}: {info['error']}")
            w.start(info)
        first = self.workers[0].info
        for w in self.workers[1:]:
            if w.info["identity"] != first["identity"]:
                diff = sorted(
                    k
                    for k in set(first["identity"]) | set(w.info["identity"])
                    if first["identity"].get(k) != w.info["identity"].get(k)
                )
                raise ClusterError(
                    f"{w.name} computes another model than {self.workers[0].name} ({', '.join(diff)} "
                    "differ): install the same model file and software on every node"
                )

    @property
    def info(self) -> dict:
        return self.workers[0].info

    def _alive(self) -> list[_Worker]:
        return [w for w in self.workers if w.alive]

    def call(self, name: str, *args, **kwargs):
        """One model call (chat template, tokenizer) answered by a live worker."""
        ray = import_ray()
        for w in self._alive():
            try:
                return ray.get(w.actor.call.remote(name, *args, **kwargs))
            except ray.exceptions.RayActorError:
                w.alive = False
            except ray.exceptions.RayTaskError as exc:
                raise _worker_error(w, exc) from None
        raise self._all_dead()

    def _plan(self, kind: str, call_id: str, ref) -> list:
        """The call's plan, made by every live worker at once (each keeps its encodings for
        the shards to come); they must agree."""
        ray = import_ray()
        refs = {w.actor.plan.remote(kind, call_id, [ref]): w for w in self._alive()}
        plans = []
        for r, w in refs.items():
            try:
                plans.append((w, ray.get(r)))
            except ray.exceptions.RayActorError:
                w.alive = False
            except ray.exceptions.RayTaskError as exc:
                raise _worker_error(w, exc) from None
        if not plans:
            raise self._all_dead()
        for w, plan in plans[1:]:
            if plan != plans[0][1]:
                raise ClusterError(
                    f"{w.name} plans the requests differently from {plans[0][0].name}: install the "
                    "same model file and software on every node"
                )
        return plans[0][1]

    def _all_dead(self) -> ClusterError:
        return ClusterError(
            "every worker of the run has died: see `ray logs` on their nodes (out of memory?), "
            "then run the same command again: answers so far are in the response store"
        )

    def run(self, kind: str, requests, stored, emit, bar, flush, book) -> None:
        """Answer the requests not in ``stored`` on the workers: ``emit(i, answer, seconds)``
        once per request, ``book(tallies)`` once per shard, ``flush()`` after each shard."""
        ray = import_ray()
        # every request travels (once, through the object store): a worker plans them all, as
        # a plain run does, and computes its shard
        ref = ray.put([(tuple(r.args), getattr(r, "task_name", None), getattr(r, "doc_id", None)) for r in requests])
        call_id = uuid.uuid4().hex
        shards = plan_shards(self._plan(kind, call_id, ref), len(self._alive()), done=stored)
        pending = deque(sorted(range(len(shards)), key=lambda s: -len(shards[s])))
        in_flight: dict = {}
        failures: dict[int, int] = {}
        answered: set[int] = set()

        def feed(w: _Worker) -> None:
            while w.alive and w.in_flight < IN_FLIGHT and pending:
                s = pending.popleft()
                in_flight[w.actor.run.remote(kind, call_id, [ref], shards[s])] = (s, w)
                w.in_flight += 1

        for w in self._alive():
            feed(w)
        while in_flight:
            (done,), _ = ray.wait(list(in_flight), num_returns=1)
            s, w = in_flight.pop(done)
            w.in_flight -= 1
            try:
                out = ray.get(done)
            except ray.exceptions.RayActorError as exc:  # Ray's restarts are used up: the others take over
                w.alive = False
                failures[s] = failures.get(s, 0) + 1
                why = str(exc).splitlines()[0][:300]
                if failures[s] > 1:
                    raise ClusterError(
                        f"{w.name} died on a shard of {len(shards[s])} {kind} requests ({why}), "
                        "as another worker did before: see `ray logs` on their nodes (out of "
                        "memory?); answers so far are in the response store, the same command "
                        "resumes"
                    ) from None
                if not self._alive():
                    raise self._all_dead() from None
                log.warning("%s died (%s); its shards go to the other workers", w.name, why)
                pending.appendleft(s)
                for v in self._alive():
                    feed(v)
                continue
            except ray.exceptions.RayTaskError as exc:
                raise _worker_error(w, exc) from None
            fresh = 0
            flush()  # one commit per shard: the store never holds part of a unit, so a resumed run recomputes none
            for i, answer, seconds in zip(shards[s], out["answers"], out["seconds"]):
                if i not in answered:  # a shard that arrives twice is taken once
                    answered.add(i)
                    emit(i, answer, seconds)
                    fresh += 1
            if fresh:
                w.book(out)
                book(out["cost"])
            self.last_answer = time.time()
            flush()
            bar.update(fresh)
            feed(w)

    def record(self, now: float | None = None) -> dict:
        import ray

        now = time.time() if now is None else now
        workers = [w.record(now) for w in self.workers]
        return {
            "address": self.address,
            "ray": ray.__version__,
            "nodes": len({w["node_id"] for w in workers}),
            "workers": workers,
            # the cluster was held from its first worker's start to this record
            "wall_s": round(now - min(w.created for w in self.workers), 3),
            "machine_s": round(sum(w["machine_s"] for w in workers), 3),
            "busy_s": round(sum(w["busy_s"] for w in workers), 6),
            "shards": sum(w["shards"] for w in workers),
            "restarts": sum(w["restarts"] for w in workers),
        }

    def close(self) -> None:
        ray = import_ray()
        for w in self.workers:
            try:
                ray.get(w.actor.close.remote(), timeout=60)
                ray.kill(w.actor, no_restart=True)
            except ray.exceptions.RayError:
                pass


def _worker_error(w: _Worker, exc) -> SLMError | BaseException:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, SLMError):
        return SLMError(f"{w.name}: {cause}")
    return exc


class ClusterMeter(CostMeter):
    """The driver's record: the workers' tallies added up, the cluster beside them."""

    def __init__(self, pool: WorkerPool):
        self.pool = pool
        infos = [w.info for w in pool.workers]
        missing = [(w, i) for w, i in zip(pool.workers, infos) if not i.get("energy_source")]
        energy = (
            (None, f"{missing[0][0].name}: {missing[0][1].get('energy_unavailable_reason')}")
            if missing
            else (Summed("sum over workers: " + "; ".join(sorted({i["energy_source"] for i in infos}))), None)
        )
        hardware = dict(infos[0]["hardware"])
        for key in hardware:  # what differs between the workers is in cluster.workers[].hardware
            if any(i["hardware"].get(key) != hardware[key] for i in infos):
                hardware[key] = None
        super().__init__(infos[0]["model"], hardware, infos[0]["software"], energy=energy)

    def sample_memory(self) -> int:
        self.peak_rss = max((w.meter.peak_rss for w in self.pool.workers), default=0)
        return self.peak_rss

    def record(self) -> dict:
        rec = super().record()
        gpus = [w.peak_gpu for w in self.pool.workers if w.peak_gpu is not None]
        rec["run"]["peak_gpu_bytes"] = max(gpus) if gpus else None
        rec["cluster"] = self.pool.record()
        return rec
