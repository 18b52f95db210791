"""The board's cost columns (from slm-suite.cost/1 records) and its Pareto frontiers.

Values come from the records, never invented: what a record lacks stays None.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slm_tasks.leaderboards.spec import COST_COLUMNS
from slm_tasks.results.cost_record import CostRecord, number

# Pareto plots: axis -> candidate cost measures (column, label, value as plotted), first found wins
PARETO_AXES = {
    "latency": [
        ("decode_ms_per_token", "decode latency (ms/token)", lambda v: v),
        ("ttft_ms", "first-token latency (ms)", lambda v: v),
        ("prefill_tok_s", "prefill time (ms per prompt token = 1000 / prefill tokens/s)", lambda v: 1000.0 / v),
    ],
    "memory": [("peak_memory_bytes", "peak memory (GB)", lambda v: v / 1e9)],
}


def _hardware_matches(record: CostRecord, profile: dict) -> bool:
    hw = record.hardware
    for key, want in profile.items():
        if key == "backend" and record.model.get("backend") != want:
            return False
        if key == "gpu" and bool(hw.get("gpu")) != bool(want):
            return False
        if key in ("cpu", "gpu_name"):
            have = hw.get("cpu") if key == "cpu" else (hw.get("gpu") or {}).get("name")
            if not have or str(want).lower() not in str(have).lower():
                return False
    return True


def _wall(record: CostRecord) -> tuple[float | None, str | None]:
    """The evaluation's compute time: measured in this run, plus what the answers it took
    from the response store cost when they were computed."""
    wall, reused = record.run_figure("wall_s"), record.run_figure("reused_stored_s")
    if wall is None:
        return None, None
    if record.run.get("reused_requests"):
        return (wall + reused, "run + store") if reused is not None else (None, None)
    return wall, "run"


def cost_values(record: CostRecord) -> dict[str, tuple[float | None, str | None]]:
    """Cost columns of one record: (value, where from). Bench protocol numbers win over the
    metered evaluation run for latency; missing stays None."""
    run, bench = record.run_figure, record.bench_median
    gpu = record.on_gpu

    def pick(*options):
        for value, source in options:
            if value is not None:
                return value, source
        return None, None

    return {
        "ttft_ms": pick((bench("ttft_ms"), "bench"), (run("ttft_ms"), "run")),
        "decode_ms_per_token": pick((bench("tg_ms_per_token"), "bench"), (run("decode_ms_per_token"), "run")),
        "prefill_tok_s": pick((bench("pp_tok_s"), "bench"), (run("prefill_tok_s"), "run")),
        "throughput_tok_s": pick((run("throughput_tok_s"), "run")),
        # the model as stored (bench) is the deployment figure; the evaluation's own process
        # may hold a re-encoded copy for scoring
        "peak_memory_bytes": pick(
            (bench("peak_rss_bytes") if not gpu else None, "bench"),
            (run("peak_gpu_bytes") if gpu else run("peak_rss_bytes"), "run"),
        ),
        "energy_per_token_j": pick((run("energy_per_token_j"), "run")),
        "wall_s": _wall(record),
        "model_bytes": pick((number(record.model.get("file_bytes")), "model")),
    }


def _combine(records: list[CostRecord]) -> tuple[dict[str, Any], list[str]]:
    """One model's cost over several runs: sums for time, max for memory, and a token- or
    request-weighted mean for rates; None where the weights are not recorded."""
    vals = [cost_values(r) for r in records]
    if len(vals) == 1:
        return {k: {"value": v, "source": s} for k, (v, s) in vals[0].items()}, []
    notes, out = [], {}
    weights = {
        "ttft_ms": "requests",
        "decode_ms_per_token": "generated_tokens",
        "prefill_tok_s": "prompt_tokens",
        "throughput_tok_s": "generated_tokens",
        "energy_per_token_j": "generated_tokens",
    }
    for key in vals[0]:
        have = [(v[key][0], rec) for v, rec in zip(vals, records) if v[key][0] is not None]
        sources = sorted({v[key][1] for v in vals if v[key][1]})
        if not have:
            out[key] = {"value": None, "source": None}
        elif key == "wall_s":
            out[key] = {"value": sum(x for x, _ in have) if len(have) == len(vals) else None, "source": "run (sum)"}
        elif key in ("peak_memory_bytes", "model_bytes"):
            out[key] = {"value": max(x for x, _ in have), "source": "max over runs"}
        else:
            w = [rec.run_figure(weights[key]) for _, rec in have]
            if all(x is not None and x > 0 for x in w):
                out[key] = {
                    "value": float(np.average([x for x, _ in have], weights=w)),
                    "source": f"{'/'.join(sources)} (weighted by {weights[key]})",
                }
            else:
                out[key] = {"value": None, "source": None}
                notes.append(f"{key} not combinable over {len(records)} runs (no {weights[key]})")
    return out, notes


def cost_and_pareto(rows, runs_by_model, spec, notes) -> dict[str, Any]:
    """Fill each row's cost, efficiency and Pareto flags; return the Pareto axes."""
    machines = set()
    for row in rows:
        runs = runs_by_model[row["model"]]
        records = [r.cost for r in runs if r.cost and _hardware_matches(r.cost, spec.hardware)]
        other = [r for r in runs if r.cost and not _hardware_matches(r.cost, spec.hardware)]
        if other:
            notes.append(
                f"model '{row['model']}': cost from {', '.join(str(r.path) for r in other)} is from "
                f"other hardware than the board's profile {spec.hardware}; not shown"
            )
        if records:
            combined, why = _combine(records)
            notes += [f"model '{row['model']}': {w}" for w in why]
            machines.update(rec.machine for rec in records)
        else:
            combined = {k: {"value": None, "source": None} for k in COST_COLUMNS}
            # lm-eval's own timer is real but includes model loading; only used with no record
            walls = [r.eval_wall_s for r in runs]
            if all(w is not None for w in walls):
                combined["wall_s"] = {"value": sum(walls), "source": "lm-eval total_evaluation_time_seconds"}
        row["cost"] = {k: combined[k] for k in spec.cost_columns}
        overall = row["overall"]["value"]
        mem = combined["peak_memory_bytes"]["value"]
        row["efficiency"] = {
            "score_per_gb": (overall / (mem / 1e9)) if overall is not None and mem else None,
            "memory": "peak_memory_bytes",
        }
    if len(machines) > 1:
        notes.append(
            f"cost columns come from {len(machines)} different machines ({', '.join(sorted(machines))}); "
            f"compare them with care"
        )
    axes = {}
    for axis, options in PARETO_AXES.items():
        # the first measure that some model has: scoring-only runs (multiple choice) never
        # decode, so their latency is the prefill time per prompt token
        for key, label, convert in options:  # noqa: B007
            xs = {}
            for r in rows:
                raw = (r["cost"].get(key) or {}).get("value") if key in r["cost"] else None
                if raw is not None and (key != "prefill_tok_s" or raw > 0):
                    xs[r["model"]] = convert(raw)
            if xs:
                break
        axes[axis] = {"key": key if xs else None, "label": label if xs else None, "values": xs}
        pts = [
            (xs[r["model"]], r["overall"]["value"], r)
            for r in rows
            if r["model"] in xs and r["overall"]["value"] is not None
        ]
        for r in rows:
            r.setdefault("pareto", {})[axis] = None
        for x, y, r in pts:
            # on the frontier: no other model is at least as good on both axes and better on one
            dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for x2, y2, _ in pts)
            r["pareto"][axis] = not dominated
    return axes
