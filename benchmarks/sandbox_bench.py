"""Benchmark of the code sandbox (slm_tasks.sandbox): per-program overhead and the time to
check every HumanEval canonical solution (and MBPP's references).

    SLM_DATA_DIR=../shared/hub python benchmarks/sandbox_bench.py [--repeats 3] [--n 40]

Prints a markdown report (machine, settings, medians) to stdout; with ``--json PATH`` it
also writes the raw numbers. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from slm_tasks import code_eval
from slm_tasks.data import load
from slm_tasks.sandbox import Sandbox, probe_isolation


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        ram = psutil.virtual_memory().total
    except Exception:  # psutil missing or unsupported: leave it out
        ram = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(ram / 2**30, 1) if ram else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def quantiles(values: list[float]) -> dict:
    vals = sorted(values)
    return {
        "median": statistics.median(vals),
        "p90": vals[min(len(vals) - 1, int(round(0.9 * (len(vals) - 1))))],
        "min": vals[0],
        "n": len(vals),
    }


def time_bare_python(n: int) -> dict:
    """Baseline: start and stop the same interpreter with the same flags, nothing else."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-S", "-B", "-c", "pass"], check=True)
        out.append(time.perf_counter() - t)
    return quantiles(out)


def time_trivial_program(sandbox: Sandbox, n: int) -> dict:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = sandbox.run("pass", "")
        out.append(time.perf_counter() - t)
        assert r.passed, r
    return quantiles(out)


def time_suite(sandbox: Sandbox, jobs: list[tuple], repeats: int) -> dict:
    walls, passed = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        results = sandbox.run_many(jobs)
        walls.append(time.perf_counter() - t)
        passed = sum(r.passed for r in results)
    q = quantiles(walls)
    q.update(passed=passed, programs=len(jobs), per_program_ms=1000 * q["median"] / len(jobs))
    return q


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data-dir",
        default=os.environ.get("SLM_DATA_DIR"),
        help="offline mirror (default $SLM_DATA_DIR, else the hub)",
    )
    ap.add_argument("--repeats", type=int, default=3, help="runs of each suite (median reported)")
    ap.add_argument("--n", type=int, default=40, help="runs of the trivial program")
    ap.add_argument("--workers", type=int, default=None, help="parallel children (default: cpu count)")
    ap.add_argument("--skip-mbpp", action="store_true")
    ap.add_argument("--json", help="also write the raw numbers here")
    args = ap.parse_args(argv)

    he = list(
        load("openai/openai_humaneval", "openai_humaneval", eval_split="test", slm_data_dir=args.data_dir)["test"]
    )
    he_jobs = [
        (d["prompt"] + d["canonical_solution"], code_eval.humaneval_tests(d), code_eval.humaneval_exposed(d))
        for d in he
    ]
    parallel = Sandbox(workers=args.workers)
    serial = Sandbox(workers=1)
    report = {
        "machine": machine(),
        "isolation": {
            "netns": parallel.isolation.netns,
            "uid": parallel.isolation.drop_to_uid,
            "notes": list(parallel.isolation.notes),
        },
        "limits": parallel.limits.child_view(),
        "workers": parallel.workers,
        "bare_python_s": time_bare_python(args.n),
        "trivial_program_s": time_trivial_program(serial, args.n),
        "humaneval_parallel": time_suite(parallel, he_jobs, args.repeats),
        "humaneval_serial": time_suite(serial, he_jobs, 1),
    }
    if probe_isolation().netns:
        report["trivial_program_without_netns_s"] = time_trivial_program(
            Sandbox(workers=1, network_namespace=False), args.n
        )
    if not args.skip_mbpp:
        mb = list(load("google-research-datasets/mbpp", "full", eval_split="test", slm_data_dir=args.data_dir)["test"])
        mb_jobs = [(d["code"], code_eval.mbpp_tests(d), code_eval.mbpp_exposed(d)) for d in mb]
        report["mbpp_parallel"] = time_suite(parallel, mb_jobs, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(render(report))
    return 0


def render(r: dict) -> str:
    m = r["machine"]
    ms = lambda s: f"{1000 * s:.1f} ms"  # noqa: E731
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB, {m['os']}, Python {m['python']}",
        f"Isolation: network namespace {'yes' if r['isolation']['netns'] else 'no'}, "
        f"child uid {r['isolation']['uid'] if r['isolation']['uid'] is not None else 'unchanged'}; "
        f"workers {r['workers']}; timeout {r['limits']['timeout_s']} s",
        "",
        "| measurement | median | p90 / min | n |",
        "|---|---:|---:|---:|",
    ]
    for key, label in (
        ("bare_python_s", "bare `python -I -S -B -c pass` (baseline)"),
        ("trivial_program_s", "sandbox: one `pass` program, end to end"),
        ("trivial_program_without_netns_s", "sandbox without the network namespace"),
    ):
        if key in r:
            q = r[key]
            lines.append(f"| {label} | {ms(q['median'])} | {ms(q['p90'])} (p90) | {q['n']} |")
    for key, label in (
        ("humaneval_parallel", f"HumanEval: all canonical solutions, {r['workers']} workers"),
        ("humaneval_serial", "HumanEval: all canonical solutions, 1 worker"),
        ("mbpp_parallel", f"MBPP test split: all references, {r['workers']} workers"),
    ):
        if key in r:
            q = r[key]
            lines.append(
                f"| {label} ({q['passed']}/{q['programs']} pass) | {q['median']:.2f} s "
                f"({q['per_program_ms']:.0f} ms/program) | {q['min']:.2f} s (min) | {q['n']} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
