"""NVML readings for the cost record: real GPUs where present, None plus a reason elsewhere."""

from __future__ import annotations

import time

import pytest

from slm_tasks.adapters import gpu

has_gpu = gpu.describe() is not None


@pytest.mark.skipif(has_gpu, reason="an NVIDIA GPU is visible")
def test_without_a_gpu_every_reading_is_none_with_a_reason():
    meter, why = gpu.NvmlMeter.open()
    assert meter is None
    assert "nvidia-ml-py" in why or "NVML" in why or "no NVIDIA GPU" in why


@pytest.mark.skipif(not has_gpu, reason="no NVIDIA GPU")
def test_on_a_gpu_the_meter_reads_energy_and_memory():
    desc = gpu.describe()
    assert desc["count"] >= 1 and desc["name"] and desc["driver"]
    meter, why = gpu.NvmlMeter.open()
    assert meter is not None, why
    try:
        time.sleep(0.5)  # an idle GPU still draws tens of watts
        assert meter.joules() > 0
        assert meter.sample_memory() > 0 and meter.peak_bytes > 0
        assert meter.source.startswith("nvml:")
    finally:
        meter.close()


@pytest.mark.skipif(not has_gpu, reason="no NVIDIA GPU")
def test_cuda_visible_devices_limits_what_is_metered(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert gpu.describe()["count"] == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu.describe() is None
