"""What a slm-vllm run costs, measured where vLLM runs: memory over vLLM's engine processes
(the whole tree, shared libraries counted once), GPU memory and energy from NVML (else CPU
package energy from RAPL), and the model's parameter count read from its safetensors headers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import psutil

from slm_tasks.adapters import gpu
from slm_tasks.adapters.cost import CostMeter
from slm_tasks.adapters.hardware import RaplReader


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


def count_params(weights: Sequence[Path]) -> int | None:
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


def energy_reader(nvml: gpu.NvmlMeter | None, nvml_reason: str | None):
    """GPU energy from NVML when a GPU is used, else CPU package energy (RAPL)."""
    if nvml is not None:
        return nvml, None
    rapl, why = RaplReader.open()
    if rapl is not None:
        return rapl, None
    return None, f"no GPU energy counter ({nvml_reason}); no CPU package energy ({why})"
