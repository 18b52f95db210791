"""Joining a Ray cluster and placing the workers on it (model_args ``ray=``, ``ray_workers=``).

``connect`` fails fast, with the fix, on an address nobody answers (Ray itself keeps retrying
for minutes); ``placements`` decides how many workers each node gets and with how many cores
or GPUs. The driver that uses them is :mod:`slm_tasks.adapters.cluster`.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

from slm_tasks.adapters.hardware import usable_cores
from slm_tasks.adapters.model_args import OFF
from slm_tasks.errors import SLMError

PIP = "pip install 'slm-suite[cluster]'"
LOCAL_OBJECT_STORE = 256 * 2**20  # requests and answers are text: a small object store is plenty


# the model arguments of a cluster run (docs/cluster.md), beside the backend's own
CLUSTER_MODEL_ARGS = {"ray": "any", "ray_workers": "int"}


class ClusterError(SLMError):
    """The Ray cluster cannot be reached or cannot run the workers."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterError(f"model_args ray= (--ray) needs Ray, which is not installed: {PIP}") from None
    return ray


def wanted(value) -> str | None:
    """The address model_args ``ray`` names (True: ``auto``), or None for a plain run."""
    if value is None or value is False or str(value).strip().lower() in OFF + ("",):
        return None
    return "auto" if value is True or str(value).strip().lower() in ("on", "true", "yes") else str(value).strip()


def connect(address: str) -> str:
    """Join the cluster at ``address`` (``auto``: the one this machine belongs to or
    ``$RAY_ADDRESS``; ``local``: start one on this machine for this run)."""
    if address == "local" and "ray" not in sys.modules:
        # a cluster for this run only: keep it on the loopback interface
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = import_ray()
    if not ray.is_initialized():
        _probe(address)
        kw = {"logging_level": logging.WARNING}
        if address == "local":
            kw.update(num_cpus=usable_cores(), object_store_memory=LOCAL_OBJECT_STORE, include_dashboard=False)
        try:
            ray.init(address=address, **kw)
        except (ConnectionError, ValueError) as exc:
            raise ClusterError(
                f"no Ray cluster at {address} ({str(exc).splitlines()[0][:200]}): start one with "
                "`ray start --head` (docs/cluster.md), or pass --ray local to start one for this "
                "run"
            ) from None
    return ray.get_runtime_context().gcs_address


def _probe(address: str) -> None:
    """Fail fast on a head that does not answer (Ray itself keeps retrying for minutes)."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(
            f"ray address {address!r} is not a cluster address: pass the head's HOST:PORT (the one "
            "`ray start --head` prints, default port 6379), auto or local"
        )
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise ClusterError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}): check the address "
            "`ray start --head` printed and that the head is up (`ray status`), or pass --ray local "
            "to start one for this run"
        ) from None


def placements(nodes: list[dict], gpu: bool, tp: int, workers: int | None) -> list[dict]:
    """Where the workers go: per node, one with all its cores (CPU engines), or one per
    ``tp`` GPUs; ``workers`` caps the count, or splits nodes' cores when it exceeds them."""
    alive = sorted((n for n in nodes if n.get("Alive")), key=lambda n: -n["Resources"].get("CPU", 0))
    if gpu:
        slots = [(n, 1, tp) for n in alive for _ in range(int(n["Resources"].get("GPU", 0)) // tp)]
        if not slots:
            raise ClusterError(
                f"no node of the cluster has {tp} free GPU(s) for a vLLM worker: add GPU nodes, "
                "or lower tensor_parallel_size"
            )
        return [
            {"node": n["NodeID"], "host": n.get("NodeManagerHostname"), "cpus": c, "gpus": g}
            for n, c, g in slots[: workers or len(slots)]
        ]
    cpus = [int(n["Resources"].get("CPU", 0)) for n in alive]
    if not workers:
        per_node = [int(c > 0) for c in cpus]
    elif workers > sum(cpus):
        raise ClusterError(
            f"ray_workers={workers} does not fit the cluster's {sum(cpus)} CPUs on {len(alive)} "
            "nodes: pass ray_workers=N with N at most the CPU count, or add nodes"
        )
    else:
        per_node = [0] * len(alive)
        for _ in range(workers):  # each to the node that gives it the most cores, then the least used
            i = max(range(len(alive)), key=lambda j: (cpus[j] // (per_node[j] + 1), -per_node[j], -j))
            per_node[i] += 1
    if not any(per_node):
        raise ClusterError(
            "the Ray cluster has no node with CPUs for a worker: add a node (`ray start "
            "--address=HEAD:6379`, docs/cluster.md)"
        )
    return [
        {"node": n["NodeID"], "host": n.get("NodeManagerHostname"), "cpus": cpus[i] // k, "gpus": 0}
        for i, (n, k) in enumerate(zip(alive, per_node))
        for _ in range(k)
    ]
