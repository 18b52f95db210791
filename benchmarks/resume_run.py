"""Time an interrupted, resumed and repeated ``slm-suite run``.

    python benchmarks/resume_run.py --at 0.8 --out /tmp/resume.json -- --confirm-run-unsafe-code

runs ``slm-suite run <args>`` (the README's main job by default) and sends it SIGTERM once
the run's progress bar passes ``--at`` of its requests; then runs the same command again
(it resumes from the response store) and once more (everything is stored). Prints and
writes, per step: wall seconds, exit code, the requests the summary says came from the
store, and the store file's size. ``--store`` defaults to a fresh file in a temp folder,
so earlier runs do not count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BAR = re.compile(r"slm-suite\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")
REUSED = re.compile(r"response store: (\d+) of (\d+) requests answered from it")


def step(cmd: list[str], at: float | None) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = {"done": 0, "total": 0, "sent": False}
    err: list[str] = []

    def follow() -> None:
        buf = ""
        while chunk := proc.stderr.read(512):
            err.append(chunk)
            buf = (buf + chunk)[-4000:]
            for done, total in BAR.findall(buf):
                state["done"], state["total"] = int(done), int(total)
            if at is not None and not state["sent"] and state["total"] and state["done"] >= at * state["total"]:
                state["sent"] = True
                proc.send_signal(signal.SIGTERM)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    out = proc.stdout.read()
    rc = proc.wait()
    reader.join(timeout=10)
    m = REUSED.search(out)
    return {
        "wall_s": round(time.perf_counter() - t0, 1),
        "rc": rc,
        "interrupted_at": state["done"] if at else None,
        "bar_total": state["total"],
        "reused": int(m.group(1)) if m else 0,
        "requests": int(m.group(2)) if m else None,
        "stdout_tail": out[-1500:],
        "stderr_tail": "".join(err)[-800:],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--at", type=float, default=0.8, help="share of the requests after which SIGTERM is sent")
    ap.add_argument("--store", default=None, help="response store file (default: a new temp file)")
    ap.add_argument("--out", type=Path, default=None, help="write the measurements as JSON here")
    ap.add_argument("args", nargs="*", help="arguments of slm-suite run (after --)")
    a = ap.parse_args(argv)
    store = a.store or str(Path(tempfile.mkdtemp(prefix="slm-resume-")) / "responses.sqlite")
    cmd = [sys.executable, "-m", "slm_tasks.cli", "run", "--store", store, *a.args]
    report = {"command": cmd, "steps": {}}
    for name, at in (("interrupted", a.at), ("resumed", None), ("repeated", None)):
        report["steps"][name] = res = step(cmd, at)
        res["store_bytes"] = sum(os.path.getsize(p) for p in Path(store).parent.glob(Path(store).name + "*"))
        print(
            f"{name}: {res['wall_s']} s, exit {res['rc']}, "
            + (f"stopped at {res['interrupted_at']}/{res['bar_total']} requests, " if at else "")
            + f"{res['reused']} requests from the store, store {res['store_bytes'] / 1e6:.1f} MB",
            flush=True,
        )
    if a.out:
        a.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
