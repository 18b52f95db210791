"""NVIDIA GPUs through NVML (``pip install nvidia-ml-py``): what the cost record says about them.

* :func:`describe` -> {"name", "count", "driver"} of the visible GPUs, or None;
* :class:`NvmlMeter` -> summed energy of the GPUs (``nvmlDeviceGetTotalEnergyConsumption``,
  millijoules since the driver loaded; Volta and newer) and peak device memory in use.

Every function returns ``None`` plus a reason instead of raising when NVML, the driver or a
GPU is missing, so the same code runs on CPU-only machines.

Visible GPUs follow ``CUDA_VISIBLE_DEVICES`` when it lists indices or UUIDs, so a run
pinned to GPUs 2,3 meters those two only.
"""

from __future__ import annotations

import os


def open_nvml():
    try:
        import pynvml  # the nvidia-ml-py distribution
    except ImportError:
        return None, "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded / ...
        return None, f"NVML is unavailable: {exc} (no NVIDIA driver on this machine?)"
    return pynvml, None


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def visible_handles(nv) -> list:
    count = nv.nvmlDeviceGetCount()
    spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None or not spec.strip():
        return [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)] if spec is None else []
    handles = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item.isdigit():
            if int(item) >= count:
                break  # CUDA stops at the first invalid entry
            handles.append(nv.nvmlDeviceGetHandleByIndex(int(item)))
        else:
            try:
                handles.append(nv.nvmlDeviceGetHandleByUUID(item))
            except Exception:
                break
    return handles


def describe() -> dict | None:
    """{"name", "count", "driver"} of the visible GPUs (name of the first), else None."""
    nv, _ = open_nvml()
    if nv is None:
        return None
    try:
        handles = visible_handles(nv)
        if not handles:
            return None
        return {
            "name": _text(nv.nvmlDeviceGetName(handles[0])),
            "count": len(handles),
            "driver": _text(nv.nvmlSystemGetDriverVersion()),
        }
    except Exception:
        return None
    finally:
        nv.nvmlShutdown()


class NvmlMeter:
    """Energy and memory of the visible GPUs. Build with :meth:`open`.

    Duck-types the energy reader of :class:`slm_tasks.adapters.cost.CostMeter`
    (``joules()`` since opening, ``source``).
    """

    def __init__(self, nv, handles: list):
        self.nv, self.handles = nv, handles
        self._start_mj = [nv.nvmlDeviceGetTotalEnergyConsumption(h) for h in handles]
        self.peak_bytes = 0
        self.sample_memory()

    @classmethod
    def open(cls) -> tuple[NvmlMeter | None, str | None]:
        nv, why = open_nvml()
        if nv is None:
            return None, why
        try:
            handles = visible_handles(nv)
        except Exception as exc:
            return None, f"NVML could not list GPUs: {exc}"
        if not handles:
            return None, "no NVIDIA GPU is visible (CUDA_VISIBLE_DEVICES or no device)"
        try:
            return cls(nv, handles), None
        except Exception as exc:  # NVMLError_NotSupported on pre-Volta GPUs
            return None, f"the GPU has no total-energy counter (nvmlDeviceGetTotalEnergyConsumption: {exc})"

    @property
    def source(self) -> str:
        return f"nvml:total_energy_consumption x{len(self.handles)} GPU"

    def joules(self) -> float:
        now = [self.nv.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles]
        return sum(n - s for n, s in zip(now, self._start_mj)) / 1000.0

    def sample_memory(self) -> int:
        """Device memory in use now (all processes: vLLM's engine runs in a child), summed."""
        used = sum(int(self.nv.nvmlDeviceGetMemoryInfo(h).used) for h in self.handles)
        self.peak_bytes = max(self.peak_bytes, used)
        return used

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except Exception:
            pass
