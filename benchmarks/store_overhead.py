"""What the response store costs a run: keys, lookups and writes for N requests.

    python benchmarks/store_overhead.py --requests 20597 --results <results_*.json>

times, for N lm-eval-shaped requests (contexts of the given length, or the real requests of a
results run's samples files when ``--results`` is given): computing the request keys, one
``get_many`` on an empty store (a fresh run), ``put`` of every answer with the default
commit policy, the final flush, and ``get_many`` on the full store (a repeated run); plus the
file size per 10,000 answers. With ``--results``, also the run's wall time from its cost
record and the store's share of it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from slm_tasks.adapters import store, store_keys
from slm_tasks.results.samples import read_rows


def requests_from(results: Path) -> list[tuple[str, tuple]]:
    """(kind, args) of every request in a run's samples files."""
    out = []
    for f in sorted(results.parent.glob("samples_*.jsonl")):
        for doc in read_rows(f):
            for arg in doc["arguments"].values():
                if "arg_1" in arg and isinstance(arg["arg_1"], dict):
                    out.append(("generate_until", (arg["arg_0"], arg["arg_1"])))
                elif "arg_1" in arg:
                    out.append(("loglikelihood", (arg["arg_0"], arg["arg_1"])))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20_597)
    ap.add_argument("--context-chars", type=int, default=600)
    ap.add_argument("--results", type=Path, default=None, help="a results_*.json with its samples files")
    a = ap.parse_args(argv)
    if a.results:
        reqs = requests_from(a.results)
    else:
        reqs = [
            ("loglikelihood", (f"Question {i}: " + "x" * a.context_chars, f" answer {i % 4}"))
            for i in range(a.requests)
        ]
    path = Path(tempfile.mkdtemp(prefix="slm-store-bench-")) / "responses.sqlite"
    t = {}
    t0 = time.perf_counter()
    keys = [(kind, store_keys.request_key(kind, args)) for kind, args in reqs]
    t["request keys"] = time.perf_counter() - t0
    st = store.ResponseStore.open(path, store_keys.store_key({"model": "bench"}))
    by_kind: dict[str, list[str]] = {}
    for kind, key in keys:
        by_kind.setdefault(kind, []).append(key)
    t0 = time.perf_counter()
    for kind, ks in by_kind.items():
        st.get_many(kind, ks)
    t["lookup, empty store"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i, (kind, key) in enumerate(keys):
        value = "The answer is 42." if kind == "generate_until" else (-1.5 - i * 1e-6, i % 3 == 0)
        st.put(kind, key, value, {"s": 0.012345})
    st.flush()
    t["put + commits"] = time.perf_counter() - t0
    st.close()
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    st = store.ResponseStore.open(path, store_keys.store_key({"model": "bench"}))
    t0 = time.perf_counter()
    found = sum(len(st.get_many(kind, ks)) for kind, ks in by_kind.items())
    t["lookup, full store"] = time.perf_counter() - t0
    st.close()
    total = t["request keys"] + t["lookup, empty store"] + t["put + commits"]
    report = {
        "requests": len(reqs),
        "found_again": found,
        "seconds": {k: round(v, 3) for k, v in t.items()},
        "store_bytes": size,
        "bytes_per_10k": round(size / len(reqs) * 10_000),
        "fresh_run_overhead_s": round(total, 3),
    }
    if a.results:
        wall = json.loads(a.results.read_text())["config"]["slm_cost"]["run"]["wall_s"]
        report["run_wall_s"] = wall
        report["overhead_share"] = round(total / wall, 5) if wall else None
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
