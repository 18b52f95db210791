"""The cost meter and the slm-suite.cost/1 record, the hardware probe and the RAPL reader."""

from __future__ import annotations

import json

import pytest

from slm_tasks.adapters import cost, hardware
from slm_tasks.adapters.hardware import RaplReader

MODEL = {"name": "m", "path": "/m.gguf", "file_bytes": 10, "quant": "Q4_1", "n_params": 5, "backend": "llama.cpp"}


def powercap(tmp_path, zones):
    """A powercap tree like the kernel's: {zone name: (energy_uj, max_energy_range_uj)}."""
    root = tmp_path / "powercap"
    for name, (energy, rng) in zones.items():
        z = root / name
        z.mkdir(parents=True)
        (z / "energy_uj").write_text(f"{energy}\n")
        (z / "max_energy_range_uj").write_text(f"{rng}\n")
    return root


def set_energy(root, zone, value):
    (root / zone / "energy_uj").write_text(f"{value}\n")


class Clock:
    """A clock the test moves by hand: durations are exact, whatever the machine's load."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def meter(energy=(None, "no RAPL here"), clock=None):
    return cost.CostMeter(
        MODEL,
        hardware.describe(threads=2),
        cost.software_versions("0.3.36", "b1"),
        energy=energy,
        clock=clock or Clock(),
    )


def test_record_has_every_schema_key_and_is_json():
    clock = Clock()
    m = meter(clock=clock)
    with m.measure({"t1": 1.0}) as w:
        w.prompt_tokens, w.prefill_s, w.requests = 100, 0.5, 4
        clock.now += 2.0
    rec = json.loads(json.dumps(m.record()))
    assert rec["schema"] == "slm-suite.cost/1"
    assert set(rec) == {"schema", "model", "hardware", "software", "run", "tasks", "bench"}
    assert set(rec["run"]) == set(cost.RUN_KEYS)
    assert set(rec["tasks"]["t1"]) == set(cost.RUN_KEYS)
    assert set(rec["hardware"]) == {"cpu", "cores", "threads", "ram_bytes", "os", "gpu"}
    assert set(rec["software"]) == {"backend_version", "backend_build", "python", "lm_eval", "slm_suite"}
    run = rec["run"]
    assert run["prefill_tok_s"] == pytest.approx(200.0)
    assert run["prompt_tokens"] == 100 and run["requests"] == 4
    assert run["peak_rss_bytes"] > 0 and run["wall_s"] == 2.0
    assert run["throughput_tok_s"] == pytest.approx(50.0)


def test_unmeasured_values_are_null_with_reason():
    rec = meter().record()
    run = rec["run"]
    assert run["energy_j"] is None and run["energy_per_token_j"] is None and run["energy_source"] is None
    assert run["energy_unavailable_reason"] == "no RAPL here"
    # nothing generated: no decode speed, no time to first token
    assert run["decode_ms_per_token"] is None and run["ttft_ms"] is None and run["prefill_tok_s"] is None
    assert run["peak_gpu_bytes"] is None


def test_work_is_split_over_tasks_by_share():
    clock = Clock()
    m = meter(clock=clock)
    with m.measure({"a": 0.75, "b": 0.25}) as w:
        w.prompt_tokens, w.requests, w.truncated_requests = 400, 4, 4
        clock.now += 3.0
    with m.measure({"b": 1.0}) as w:
        w.generated_tokens, w.decode_s, w.decode_tokens, w.requests = 10, 0.09, 9, 1
        w.ttft_s.append(0.02)
        clock.now += 1.0
    rec = m.record()
    a, b = rec["tasks"]["a"], rec["tasks"]["b"]
    assert (a["prompt_tokens"], b["prompt_tokens"]) == (300, 100)
    assert (a["requests"], b["requests"]) == (3, 2)
    assert (a["truncated_requests"], b["truncated_requests"]) == (3, 1)
    assert b["decode_ms_per_token"] == pytest.approx(10.0) and a["decode_ms_per_token"] is None
    assert rec["run"]["ttft_ms"] == pytest.approx(20.0)
    # each unit's time goes to its tasks by share: a 0.75 * 3 s, b 0.25 * 3 s + 1 s
    assert (a["wall_s"], b["wall_s"], rec["run"]["wall_s"]) == (2.25, 1.75, 4.0)
    assert a["throughput_tok_s"] == pytest.approx(300 / 2.25)
    assert a["peak_rss_bytes"] is None  # memory peaks belong to the process, not a task


def test_microsecond_shares_are_rounded_each_to_the_record_precision():
    """Units of a few microseconds (a run answered from the store): every figure is rounded
    to 1 us on its own, so the tasks' walls add up to the run's within that rounding."""
    clock = Clock()
    m = meter(clock=clock)
    durations = [1.4e-6, 2.6e-6, 0.7e-6]
    booked = []
    for d in durations:
        start = clock.now
        with m.measure({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}):
            clock.now += d
        booked.append(clock.now - start)
    rec = m.record()
    exact = sum(booked)
    walls = [rec["tasks"][t]["wall_s"] for t in "abc"]
    assert rec["run"]["wall_s"] == round(exact, 6)
    for wall in walls:
        assert abs(wall - exact / 3) <= 0.5e-6 + 1e-12
    assert abs(sum(walls) - rec["run"]["wall_s"]) <= (len(walls) + 1) * 0.5e-6 + 1e-12


def test_rapl_energy_is_metered_per_task(tmp_path):
    root = powercap(tmp_path, {"intel-rapl:0": (1_000_000, 2**32), "intel-rapl:0:0": (5, 2**32)})
    reader, reason = RaplReader.open(root)
    assert reason is None and reader.zones == [root / "intel-rapl:0"]  # subzones are not added twice
    m = meter(energy=(reader, None))
    with m.measure({"t": 1.0}) as w:
        w.prompt_tokens = 50
        set_energy(root, "intel-rapl:0", 3_500_000)  # 2.5 J during this unit
    run = m.record()["run"]
    assert run["energy_j"] == pytest.approx(2.5)
    assert run["energy_per_token_j"] == pytest.approx(0.05)
    assert run["energy_source"].startswith("rapl:") and run["energy_unavailable_reason"] is None
    assert m.record()["tasks"]["t"]["energy_j"] == pytest.approx(2.5)


def test_rapl_counter_wraparound(tmp_path):
    root = powercap(tmp_path, {"intel-rapl:0": (900, 1000), "intel-rapl:1": (0, 1000)})
    reader, _ = RaplReader.open(root)
    set_energy(root, "intel-rapl:0", 100)  # wrapped: 900 -> 1000 -> 100 = 200 uJ
    set_energy(root, "intel-rapl:1", 300)
    assert reader.joules() == pytest.approx(500e-6)


def test_rapl_unavailable_reasons(tmp_path):
    reader, reason = RaplReader.open(tmp_path / "missing")
    assert reader is None and "does not exist" in reason
    (tmp_path / "empty").mkdir()
    reader, reason = RaplReader.open(tmp_path / "empty")
    assert reader is None and "no package energy zones" in reason


def test_hardware_descriptor_describes_this_machine():
    hw = hardware.describe(threads=3)
    assert hw["threads"] == 3 and hw["cores"] >= 1 and hw["ram_bytes"] > 0 and hw["os"]
    assert hw["gpu"] is None or {"name", "count", "driver"} <= set(hw["gpu"])
