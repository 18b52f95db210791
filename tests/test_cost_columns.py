"""The board's cost columns from one cost record: which figure wins, and resumed runs."""

from slm_tasks.leaderboards.cost_columns import cost_values
from slm_tasks.results.cost_record import SCHEMA, CostRecord


def record(run=None, bench=None):
    data = {"model": {"backend": "llama.cpp", "file_bytes": 10}, "hardware": {}, "run": run or {}, "bench": bench}
    return CostRecord.from_json({"schema": SCHEMA, **data}, "results_x.json")


def test_the_model_as_stored_gives_latency_and_memory_when_benched():
    rec = record(
        run={"ttft_ms": 2000.0, "peak_rss_bytes": 900, "wall_s": 5.0},
        bench={"ttft_ms": {"median": 160.0}, "peak_rss_bytes": 400},
    )
    vals = cost_values(rec)
    assert vals["ttft_ms"] == (160.0, "bench")
    assert vals["peak_memory_bytes"] == (400.0, "bench")
    assert cost_values(record(run={"peak_rss_bytes": 900}))["peak_memory_bytes"] == (900.0, "run")


def test_a_resumed_run_counts_the_stored_work_in_its_wall_time():
    fresh = cost_values(record(run={"wall_s": 5.0, "reused_requests": 0, "reused_stored_s": None}))
    resumed = cost_values(record(run={"wall_s": 1.0, "reused_requests": 40, "reused_stored_s": 4.5}))
    assert fresh["wall_s"] == (5.0, "run")
    assert resumed["wall_s"] == (5.5, "run + store")
    # stored answers without timings: the evaluation's time is unknown, not the part measured
    assert cost_values(record(run={"wall_s": 1.0, "reused_requests": 40, "reused_stored_s": None}))["wall_s"] == (
        None,
        None,
    )
