"""Where lm-eval's model arguments become a model: the backend itself, or the backend on a cluster.

lm-eval builds a registered model through two class methods, ``create_from_arg_string`` and
``create_from_arg_obj`` (``lm_eval --model slm-llamacpp --model_args ...``, ``simple_evaluate``,
``slm-suite run``). :class:`SLMBackend` implements them up to one step,
:meth:`SLMBackend.from_checked_args`; the registered backends take that step from
:class:`ClusterCapable`, which calls :func:`make`: with ``ray=ADDRESS`` the model is a
:class:`~slm_tasks.adapters.cluster.ClusterLM` around the backend (its engine work on Ray workers,
docs/cluster.md), otherwise the backend itself. The cluster wraps any backend and the backend
knows nothing of it, as lm-eval's ``CachingLM`` wraps any model: the arrows run from here to
both, and Ray loads only when a cluster is asked for.
"""

from __future__ import annotations

from slm_tasks.adapters.cluster_connect import CLUSTER_MODEL_ARGS, wanted


def make(backend: type, args: dict):
    """The model for ``backend`` and its checked model arguments ``args``."""
    if "ray" not in args:
        return backend(**args)
    if wanted(args["ray"]) is None:  # ray=off, ray=false ...: a plain run
        return backend(**{k: v for k, v in args.items() if k not in CLUSTER_MODEL_ARGS})
    from slm_tasks.adapters.cluster import ClusterLM

    return ClusterLM(backend, args)


class ClusterCapable:
    """Mixed in ahead of :class:`SLMBackend` by every registered backend (``slm-llamacpp``,
    ``slm-vllm``): its model arguments include the cluster's, and lm-eval builds it through
    :func:`make`."""

    WRAPPER_MODEL_ARGS = CLUSTER_MODEL_ARGS

    @classmethod
    def from_checked_args(cls, args: dict):
        return make(cls, args)
