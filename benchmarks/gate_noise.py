"""False alarms of the release gate's cost budgets on repeated runs of one model.

Runs the runtime bench that `slm-suite run` adds to a cost record (survey protocol, 3 runs,
1 s pause) N times for one model, then gates pairs of those records against each other with
the packaged policy's budgets (leaderboards/gate.yaml): the same model against itself, so
every "fail" is a false alarm. Two rules are compared:

* old: the medians compared as they are (candidate median <= baseline median * 1.10);
* new: slm_tasks.leaderboards.gate_checks (fail only when shown beyond the budget across the
  runs' spread; "not shown" when the spread cannot tell).

    python benchmarks/gate_noise.py --n 16 --records /tmp/gate-noise   # collect, then report
    python benchmarks/gate_noise.py --records /tmp/gate-noise --n 0     # report what is there

Records already in --records are kept and reused (the collection resumes).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from slm_tasks.leaderboards.cost_columns import cost_values
from slm_tasks.leaderboards.gate_checks import FAIL, NOT_SHOWN, PASS, budget_checks
from slm_tasks.leaderboards.gate_policy import load_policy
from slm_tasks.leaderboards.spec import COST_COLUMNS
from slm_tasks.results.cost_record import CostRecord


def collect(model: str, n: int, folder: Path) -> None:
    from slm_tasks.adapters.bench import bench

    folder.mkdir(parents=True, exist_ok=True)
    have = len(list(folder.glob("record_*.json")))
    for i in range(have, have + n):
        t0 = time.time()
        rec = bench(model, runs=3, pause_s=1.0, protocols=("survey",), progress=False)
        rec["collected_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        path = folder / f"record_{i:03d}.json"
        path.write_text(json.dumps(rec, indent=1) + "\n")
        tg = rec["bench"]["tg_ms_per_token"]
        print(f"{path.name}: decode {tg['values']} ms/token ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)


def old_rule(budgets: dict, brec: CostRecord, crec: CostRecord) -> dict[str, bool]:
    """The gate before noise-aware budgets: each budget on the two figures (medians)."""
    out = {}
    for key, rule in budgets.items():
        lower = COST_COLUMNS[key][2]
        bv, cv = cost_values(brec)[key][0], cost_values(crec)[key][0]
        for kind, limit in rule.items():
            if kind in ("max_increase", "max_decrease"):
                bound = None if bv is None else bv * (1 + limit if kind == "max_increase" else 1 - limit)
            else:
                bound = limit
            known = cv is not None and bound is not None
            out[f"{key} {kind}"] = known and (cv <= bound if lower else cv >= bound)
    return out


def summarise(records: list[CostRecord], budgets: dict, alpha: float, pairs) -> dict:
    old_fail = 0
    new = {PASS: 0, FAIL: 0, NOT_SHOWN: 0}
    per_check: dict[str, dict[str, int]] = {}
    for i, j in pairs:
        old = old_rule(budgets, records[i], records[j])
        old_fail += not all(old.values())
        checks = budget_checks(budgets, "fail", alpha, records[i], records[j])
        statuses = {c.status for c in checks}
        new[FAIL if FAIL in statuses else NOT_SHOWN if NOT_SHOWN in statuses else PASS] += 1
        for c in checks:
            row = per_check.setdefault(c.name, {"old fail": 0, PASS: 0, FAIL: 0, NOT_SHOWN: 0})
            row["old fail"] += not old[c.name]
            row[c.status] += 1
    return {"comparisons": len(pairs), "old_fail": old_fail, "new": new, "per_check": per_check}


def spread(records: list[CostRecord], entry: str) -> dict:
    medians = [r.bench_median(entry) for r in records]
    runs = [v for r in records for v in r.bench_values(entry)]
    within = [max(r.bench_values(entry)) / min(r.bench_values(entry)) for r in records]
    return {
        "median_of_medians": float(np.median(medians)),
        "min_median": min(medians),
        "max_median": max(medians),
        "max_over_min_medians": max(medians) / min(medians),
        "max_over_min_runs": max(runs) / min(runs),
        "cv_medians": float(np.std(medians, ddof=1) / np.mean(medians)) if len(medians) > 1 else None,
        "within_record_max_over_min_median": float(np.median(within)),
    }


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=16, help="bench records to add (0: report on what is there)")
    ap.add_argument("--records", type=Path, required=True, help="folder of the cost records (kept, reused)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    args = ap.parse_args(argv)
    if args.n:
        collect(args.model, args.n, args.records)
    paths = sorted(args.records.glob("record_*.json"))
    records = [CostRecord.from_json(json.loads(p.read_text()), p) for p in paths]
    if len(records) < 2:
        print(f"{len(records)} records in {args.records}: need at least 2", file=sys.stderr)
        return 2
    pol = load_policy("gate")
    consecutive = [(i, i + 1) for i in range(len(records) - 1)]
    all_pairs = list(itertools.permutations(range(len(records)), 2))
    doc = {
        "model": args.model,
        "records": len(records),
        "machine": machine(),
        "first": records[0].raw.get("collected_at"),
        "last": records[-1].raw.get("collected_at"),
        "protocol": records[0].bench["protocol"],
        "runs_per_record": records[0].bench["runs"],
        "budgets": pol.budgets,
        "alpha": pol.alpha,
        "consecutive": summarise(records, pol.budgets, pol.alpha, consecutive),
        "all_ordered_pairs": summarise(records, pol.budgets, pol.alpha, all_pairs),
        "decode_ms_per_token": spread(records, "tg_ms_per_token"),
        "prefill_tok_s": spread(records, "pp_tok_s"),
    }
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(report(doc))
    return 0


def report(doc: dict) -> str:
    lines = [
        f"model {doc['model']}, {doc['records']} records ({doc['protocol']}, "
        f"{doc['runs_per_record']} runs each), {doc['first']} .. {doc['last']}, "
        f"machine: {doc['machine']}",
        "",
        "| pairs | comparisons | old rule: fail | new rule: fail | new: not shown | new: pass |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label in ("consecutive", "all_ordered_pairs"):
        s = doc[label]
        n = s["comparisons"]
        pct = lambda k: f"{k} ({100 * k / n:.0f}%)"  # noqa: B023, E731
        lines.append(
            f"| {label.replace('_', ' ')} | {n} | {pct(s['old_fail'])} | {pct(s['new'][FAIL])} | "
            f"{pct(s['new'][NOT_SHOWN])} | {pct(s['new'][PASS])} |"
        )
    lines += [
        "",
        "| budget (all ordered pairs) | old fail | new fail | new not shown | new pass |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in doc["all_ordered_pairs"]["per_check"].items():
        lines.append(f"| {name} | {row['old fail']} | {row[FAIL]} | {row[NOT_SHOWN]} | {row[PASS]} |")
    lines += [
        "",
        "| figure | median of medians | min..max median | max/min medians | max/min runs "
        "| CV medians | within-record max/min (median) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in ("decode_ms_per_token", "prefill_tok_s"):
        s = doc[key]
        known = s["cv_medians"] is not None and math.isfinite(s["cv_medians"])
        cv = f"{100 * s['cv_medians']:.0f}%" if known else "—"
        lines.append(
            f"| {key} | {s['median_of_medians']:.3g} | "
            f"{s['min_median']:.3g}..{s['max_median']:.3g} | "
            f"{s['max_over_min_medians']:.2f} | {s['max_over_min_runs']:.2f} | {cv} | "
            f"{s['within_record_max_over_min_median']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
