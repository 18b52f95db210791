"""What the activation hook costs a Python process that never imports lm-eval.

Builds a wheel of this checkout, makes two fresh venvs that differ only in having it
installed (lm-eval and its dependencies in both), and times `python -c pass` in each,
interleaved, plus `python -X importtime` for the modules the .pth imports.

    python benchmarks/startup_overhead.py [--runs 40]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_venv(path: Path, *packages: str) -> Path:
    venv.create(path, with_pip=True)
    py = path / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages], check=True)
    return py


def wall_ms(py: Path) -> float:
    start = time.perf_counter()
    subprocess.run([py, "-c", "pass"], check=True)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp, REPO], check=True)
        wheel = str(next(tmp.glob("slm_suite-*.whl")))
        base = make_venv(tmp / "base", "lm-eval==0.4.13")
        ours = make_venv(tmp / "ours", wheel)
        times = {"without slm-suite": [], "with slm-suite": []}
        for _ in range(args.runs):  # interleaved, so machine load hits both alike
            times["without slm-suite"].append(wall_ms(base))
            times["with slm-suite"].append(wall_ms(ours))
        imp = subprocess.run([ours, "-X", "importtime", "-c", "pass"], capture_output=True, text=True).stderr
        print("| venv | median ms | IQR ms | runs |\n|---|---|---|---|")
        for name, xs in times.items():
            q = statistics.quantiles(xs, n=4)
            print(f"| {name} | {statistics.median(xs):.1f} | {q[0]:.1f}–{q[2]:.1f} | {len(xs)} |")
        print("\n`-X importtime` lines for our modules (self µs | cumulative µs | module):")
        for line in imp.splitlines():
            if "slm_tasks" in line:
                print("    " + line.replace("import time:", "").strip())


if __name__ == "__main__":
    main()
