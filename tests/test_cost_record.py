"""The one reader of the slm-suite.cost/1 record: checks, figures, and where a record is stored."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from slm_tasks.adapters import cost, hardware
from slm_tasks.results.cost_record import SCHEMA, CostRecord, record_of_results
from slm_tasks.results.errors import BoardError

FIXTURES = Path(__file__).parent / "fixtures" / "results"
REAL_RUN = FIXTURES / "llamacpp-limit30" / "smollm2-135m" / "results_2026-11-22T21-34-06.630976.json"


def example() -> dict:
    return json.loads((FIXTURES / "cost-record.example.json").read_text())


def test_the_meters_record_reads_back_with_its_figures():
    clock = iter([10.0, 12.5]).__next__
    meter = cost.CostMeter(
        {"name": "m", "backend": "llama.cpp"},
        hardware.describe(threads=2),
        cost.software_versions("0.3.36", "b1"),
        energy=(None, "no RAPL here"),
        clock=clock,
    )
    with meter.measure({"t1": 1.0}) as w:
        w.prompt_tokens, w.prefill_s, w.requests = 100, 0.5, 4
    rec = CostRecord.from_json(json.loads(json.dumps(meter.record())), "r.json")
    assert rec.run_figure("wall_s") == 2.5 and rec.run_figure("prefill_tok_s") == 200.0
    assert rec.run_figure("energy_j") is None and rec.run["energy_unavailable_reason"] == "no RAPL here"
    assert rec.tasks["t1"]["requests"] == 4
    assert rec.model_name == "m" and not rec.on_gpu and not rec.benched and rec.bench == {}


def test_missing_or_null_sections_read_as_empty():
    rec = CostRecord.from_json({"schema": SCHEMA, "run": {"wall_s": 3}, "bench": None}, "r.json")
    assert (rec.model, rec.hardware, rec.bench, rec.cluster) == ({}, {}, {}, {})
    assert rec.model_name is None and rec.run_figure("wall_s") == 3.0
    assert rec.run_figure("ttft_ms") is None and rec.bench_median("tg_ms_per_token") is None


@pytest.mark.parametrize(
    "data, says",
    [
        ({"schema": "slm-suite.cost/0"}, "cost record schema is 'slm-suite.cost/0', expected 'slm-suite.cost/1'"),
        ({"run": {}}, "cost record schema is None"),
        ([1, 2], "cost record schema is 'list'"),
        ({"schema": SCHEMA, "hardware": "a laptop"}, "cost record field 'hardware' must be an object or null"),
        ({"schema": SCHEMA, "bench": [9.0]}, "cost record field 'bench' must be an object or null"),
    ],
)
def test_a_bad_record_is_one_line_naming_its_file(data, says):
    with pytest.raises(BoardError) as err:
        CostRecord.from_json(data, Path("runs/m/results_1.cost.json"))
    msg = str(err.value)
    assert msg.startswith("runs/m/results_1.cost.json: ") and says in msg and "\n" not in msg


def test_bench_figures_medians_and_every_run():
    data = example()
    data["bench"] = {
        "protocol": "survey-p50-g50-c2048",
        "tg_ms_per_token": {"median": 9.0, "values": [8.5, 9.0, 9.5]},
        "pp_tok_s": {"median": 400.0, "values": [390.0, 0.0, 410.0]},  # one run measured nothing
        "ttft_ms": {"median": 120.0, "values": [120.0, True]},
        "peak_rss_bytes": 300_000_000,
    }
    rec = CostRecord.from_json(data, "r.json")
    assert rec.benched and rec.bench_median("tg_ms_per_token") == 9.0
    assert rec.bench_values("tg_ms_per_token") == [8.5, 9.0, 9.5]
    assert rec.bench_values("pp_tok_s") is None and rec.bench_values("ttft_ms") is None
    assert rec.bench_median("peak_rss_bytes") == 3e8 and rec.bench_values("peak_rss_bytes") is None


def test_a_record_stored_in_the_results_config_is_read(tmp_path):
    """How `slm-suite run` and lm_eval store it now, and how the committed real runs have it."""
    results = json.loads(REAL_RUN.read_text())
    rec, source = record_of_results(results, REAL_RUN)
    assert source == "results config" and rec.where == str(REAL_RUN)
    assert rec.raw is results["config"]["slm_cost"] and rec.run_figure("wall_s") > 0
    assert rec.model_name == "smollm2-135m"
    # a config record with the wrong schema names the results file
    results["config"]["slm_cost"] = {"schema": "x/1"}
    path = tmp_path / "results_1.json"
    with pytest.raises(BoardError, match=rf"^{path}: cost record schema is 'x/1'"):
        record_of_results(results, path)
    assert record_of_results({"results": {}, "config": {}}, path) == (None, None)


def test_a_sidecar_of_an_earlier_version_is_read_and_wins(tmp_path):
    results = tmp_path / "results_1.json"
    in_config = {**example(), "run": {"wall_s": 1.0}}
    results.write_text(json.dumps({"results": {}, "config": {"slm_cost": in_config}}))
    sidecar = tmp_path / "results_1.cost.json"
    sidecar.write_text(json.dumps({**example(), "run": {"wall_s": 2.0}}))
    rec, source = record_of_results(json.loads(results.read_text()), results)
    assert source == "sidecar results_1.cost.json" and rec.run_figure("wall_s") == 2.0
    assert rec.where == str(sidecar)
    # a sidecar only (the results config of an older run without it)
    rec, _ = record_of_results({"results": {}}, results)
    assert rec.run_figure("wall_s") == 2.0


@pytest.mark.parametrize("bad", ["not-json", "wrong-schema", "fifo", "dangling-link"])
def test_a_sidecar_that_cannot_be_read_is_refused_by_name(tmp_path, bad):
    results = tmp_path / "results_1.json"
    sidecar = tmp_path / "results_1.cost.json"
    if bad == "not-json":
        sidecar.write_text("{ broken")
    elif bad == "wrong-schema":
        sidecar.write_text('{"schema": "other/9"}')
    elif bad == "fifo":
        os.mkfifo(sidecar)
    else:
        sidecar.symlink_to(tmp_path / "gone.json")
    with pytest.raises(BoardError) as err:
        record_of_results({"results": {}, "config": {"slm_cost": example()}}, results)
    assert str(err.value).startswith(f"{sidecar}: ") and "\n" not in str(err.value)


def test_the_run_summary_prints_from_the_record(capsys):
    from slm_tasks.cli import _print_cost

    data = example()
    data["run"].update({"wall_s": 4.0, "reused_requests": 6, "requests": 4, "reused_stored_s": 12.0})
    data["bench"] = {
        "protocol": "survey-p50-g50-c2048",
        "runs": 3,
        "ttft_ms": {"median": 150.0},
        "tg_ms_per_token": {"median": 9.25},
        "pp_tok_s": {"median": 410.0},
    }
    _print_cost(CostRecord.from_json(data, "r.json"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("cost: 4.0 s wall")
    assert lines[1] == (
        "runtime (survey-p50-g50-c2048, model as stored, median of 3): first token 150 ms, "
        "decode 9.2 ms/token, prefill 410 tok/s"
    )
    assert lines[2] == "response store: 6 of 10 requests answered from it (they took 12.0 s when computed)"


def test_the_run_summary_prints_the_long_context_bench(capsys):
    from slm_tasks.cli import _print_cost

    data = example()
    data["bench"] = {
        "protocol": "survey-p50-g50-c2048+long-context-1000-2000",
        "runs": 3,
        "ttft_ms": {"median": 150.0},
        "tg_ms_per_token": {"median": 9.25},
        "pp_tok_s": {"median": 410.0},
        "protocols": {
            "long-context": {
                "runs": 2,
                "lengths": {
                    "1000": {
                        "pp_tok_s": {"median": 293.4},
                        "tg_ms_per_token": {"median": 22.53},
                        "kv_mib": 22.5,
                        "compute_mib": 98.25,
                        "rss_bytes": 2**30,
                    }
                },
                "not_applicable": {},
            }
        },
    }
    _print_cost(CostRecord.from_json(data, "r.json"))
    lines = capsys.readouterr().out.splitlines()
    # one line per length, under the runtime line; the process's resident memory (which in a
    # run holds the evaluation too) stays in the record
    assert lines[2] == (
        "  at 1000 tokens (median of 2): prefill 293 tok/s, decode 22.5 ms/token; "
        "KV cache 22.5 MiB + compute buffer 98.2 MiB"
    )
