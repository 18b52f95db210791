"""slm-llamacpp against lm-eval's `hf` model (same weights) and lm-eval's `gguf` model.

Runs, one after the other on the same machine, on the multiple-choice tasks of the lite
profile (``--limit`` documents per task):

  (a) ``lm_eval --model slm-llamacpp`` (this package, in process llama.cpp);
  (a') with ``--dequantise f32,f16``: the same with ``dequantise=f32`` / ``f16`` (the weights
      re-encoded and computed in that format);
  (b) ``lm_eval --model hf`` on CPU, fp32, on the GGUF dequantised to a transformers
      checkpoint (``export-hf`` below; needs torch/transformers/gguf in ``--hf-python``);
  (c) ``lm_eval --model gguf`` against ``python -m llama_cpp.server`` (needs
      ``llama-cpp-python[server]`` and ``lm-eval[api]`` in ``--hf-python``), on fewer documents.

and `slm-suite bench` (llama-bench pp512) for the compute bound: tokens slm-llamacpp
evaluated / pp512 tokens per second. Prints a markdown report (also written to
``<out>/report.md``). Not a test: speed targets live here, not in assertions.

    python benchmarks/llamacpp_vs_hf.py --hf-python /path/to/hf-venv/bin/python --limit 20
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def lite_tasks() -> tuple[list[str], list[str]]:
    """The lite board's tasks (leaderboards/lite.yaml): (scored by accuracy, i.e. multiple
    choice; the rest, i.e. generation)."""
    from slm_tasks.leaderboards.spec import load_spec

    mc, gen = [], []
    for domain in load_spec("lite").domains:
        for t in domain.tasks:
            if t.task:
                (mc if any(m.startswith("acc,") for m in t.metrics) else gen).append(t.task)
    return mc, gen


def export_hf(gguf: str, out: str) -> None:
    """Dequantise a GGUF file into a float32 transformers checkpoint (run with --hf-python)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(gguf)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, torch_dtype=torch.float32)
    # a gguf-loaded model refuses save_pretrained: rebuild it from a plain config
    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise SystemExit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    print(f"exported {gguf} -> {out}")


def _run(cmd, env, log: Path, timeout: float | None = None, **facts) -> dict:
    """Run ``cmd`` with its output in ``log``; the run's record (exit code, wall, when, ``facts``)."""
    t0, at = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M")
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = None
    return {"rc": rc, "process_wall_s": time.perf_counter() - t0, "at": at, **facts}


def _results(out_dir: Path) -> tuple[dict | None, dict]:
    files = sorted(glob.glob(str(out_dir / "**" / "results_*.json"), recursive=True))
    if not files:
        return None, {}, 0
    results = json.loads(Path(files[-1]).read_text())
    chosen, n_requests = {}, 0
    for f in glob.glob(str(out_dir / "**" / "samples_*.jsonl"), recursive=True):
        for line in open(f):
            s = json.loads(line)
            lls = [r[0] if isinstance(r, (list, tuple)) else r for r in s["filtered_resps"]]
            lls = [x[0] if isinstance(x, (list, tuple)) else x for x in lls]
            n_requests += len(s["arguments"])
            task = Path(f).name.removeprefix("samples_").rsplit("_", 1)[0]
            if not isinstance(next(iter(s["arguments"].values())).get("arg_1"), dict):  # multiple choice
                chosen[(task, s["doc_id"])] = max(range(len(lls)), key=lambda i: float(lls[i]))
            else:  # generation: the (filtered) text
                chosen[(task, s["doc_id"])] = lls[0] if len(lls) == 1 else tuple(lls)
    return results, chosen, n_requests


def _hf_tokens(out_dir: Path, model: str) -> int:
    """Tokens lm-eval's HF model feeds for the logged requests: context + continuation - 1
    each (padding not counted), with the model's own tokenizer."""
    from slm_tasks.adapters import scoring
    from slm_tasks.adapters.llamacpp_engine import LlamaEngine
    from slm_tasks.adapters.models import resolve_model

    eng = LlamaEngine(resolve_model(model), max_length=512, n_threads=1)
    enc = lambda text, add_special_tokens=None: eng.tokenize(text, bool(add_special_tokens))  # noqa: E731
    prefix = eng.bos if eng.bos is not None else eng.eos
    total = 0
    try:
        for f in glob.glob(str(out_dir / "**" / "samples_*.jsonl"), recursive=True):
            for line in open(f):
                for arg in json.loads(line)["arguments"].values():
                    ctx, cont = scoring.encode_request(arg["arg_0"], arg["arg_1"], enc, prefix)
                    total += len(ctx) + len(cont) - 1
    finally:
        eng.close()
    return total


def _scores(results: dict | None, tasks: list[str]) -> dict[str, float | None]:
    """Each task's score as the lite board defines it (exact_match for math, pass@1 for
    coding); a task outside its domains (the ICL variants) by its accuracy."""
    if not results:
        return {t: None for t in tasks}
    from slm_tasks.leaderboards.spec import load_spec

    board = {t: v["value"] for d in load_spec("lite").score(results)["domains"].values() for t, v in d["tasks"].items()}
    return {t: board.get(t, results["results"].get(t, {}).get("acc,none")) for t in tasks}


def _wait_port(port: int, timeout: float) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(1)
    return False


PROBE = [
    ("The capital of France is", " Paris"),
    ("Question: What color is the sky?\nAnswer:", " blue"),
    ("Question: What color is the sky?\nAnswer:", " green"),
]


def _gguf_probe(port: int, model: str) -> list[dict]:
    """Send lm-eval gguf's own loglikelihood request for a few pairs and parse the reply
    with its own ``get_result``; next to slm-llamacpp's value for the same pair."""
    import urllib.request

    from lm_eval.api.instance import Instance
    from lm_eval.models.gguf import get_result

    from slm_tasks.adapters.llamacpp import LlamaCppLM

    ours = LlamaCppLM(model=model, n_threads=1, n_ctx=512)
    out = []
    try:
        scores = ours.loglikelihood(
            [Instance("loglikelihood", {}, p, i) for i, p in enumerate(PROBE)], disable_tqdm=True
        )
        for (ctx, cont), (mine, _) in zip(PROBE, scores):
            body = json.dumps(
                {"prompt": ctx + cont, "logprobs": 10, "temperature": 0.0, "max_tokens": 1, "echo": True}
            ).encode()
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/completions", data=body, headers={"Content-Type": "application/json"}
            )
            reply = json.loads(urllib.request.urlopen(req, timeout=300).read())
            lp = reply["choices"][0]["logprobs"]
            gguf_value, _ = get_result(lp, len(ctx))
            out.append(
                {
                    "context": ctx,
                    "continuation": cont,
                    "gguf": gguf_value,
                    "slm_llamacpp": mine,
                    "echo_tokens": lp["tokens"],
                    "echo_token_logprobs": lp["token_logprobs"],
                }
            )
    finally:
        ours.close()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", nargs="?", default="run", choices=["run", "export-hf"])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--gguf", help="export-hf: the GGUF file")
    ap.add_argument("--tasks", help="comma-separated multiple-choice tasks (default: the lite board's)")
    ap.add_argument("--limit", type=int, default=20, help="documents per task")
    ap.add_argument(
        "--gen-tasks",
        default="",
        help="comma-separated generation tasks, run by (a) and (b) as "
        "a second invocation each (lite: the lite board's)",
    )
    ap.add_argument("--gen-limit", type=int, default=10, help="prompts per generation task")
    ap.add_argument("--hf-batch", default="16", help="lm-eval --batch_size for (b)")
    ap.add_argument("--gguf-limit", type=int, default=5, help="documents per task for (c); 0: only the probe")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--hf-python", help="a Python with torch, transformers, gguf, lm-eval[hf,api], llama-cpp-python[server]"
    )
    ap.add_argument("--out", type=Path, default=Path("benchmark-out"))
    ap.add_argument(
        "--skip",
        default="",
        help="comma-separated: a,b,c,bench (runs kept from an earlier report.json in --out, same settings)",
    )
    ap.add_argument(
        "--dequantise",
        default="",
        help="comma-separated: also run (a') slm-llamacpp with dequantise=<each> (f32, f16, bf16)",
    )
    ap.add_argument("--gguf-timeout", type=float, default=600)
    args = ap.parse_args(argv)
    if args.command == "export-hf":
        export_hf(args.gguf, str(args.out))
        return 0

    from slm_tasks.adapters.models import resolve_model

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    gguf = resolve_model(args.model)
    lite_mc, lite_gen = lite_tasks()
    tasks = args.tasks.split(",") if args.tasks else lite_mc
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(args.threads),
        TOKENIZERS_PARALLELISM="false",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_OFFLINE="1",
    )
    lm_eval = lambda py: [py, "-m", "lm_eval"]  # noqa: E731
    common = ["--tasks", ",".join(tasks), "--limit", str(args.limit), "--log_samples"]
    gen_tasks = lite_gen if args.gen_tasks == "lite" else list(filter(None, args.gen_tasks.split(",")))
    gen = ["--tasks", ",".join(gen_tasks), "--limit", str(args.gen_limit), "--log_samples", "--confirm_run_unsafe_code"]
    report: dict = {
        "model": args.model,
        "gguf": str(gguf),
        "limit": args.limit,
        "tasks": tasks,
        "gen_tasks": gen_tasks,
        "gen_limit": args.gen_limit,
        "threads": args.threads,
        "runs": {},
    }
    previous = out / "report.json"
    if skip and previous.is_file():  # a partial re-run keeps the skipped runs of the same settings
        old = json.loads(previous.read_text())
        keys = ("model", "limit", "threads") + (("gen_tasks", "gen_limit") if gen_tasks else ())
        same = all(old.get(k) == report[k] for k in keys) and sorted(old["tasks"]) == sorted(tasks)
        if not same:
            raise SystemExit(f"{previous} was made with other settings: use another --out")
        # a skipped backend keeps its generation run too, when generation is asked for again
        report["runs"] = {
            k: v
            for k, v in old["runs"].items()
            if k.removesuffix("-gen") in skip and (gen_tasks or not k.endswith("-gen"))
        }
        if "bench" in skip and old.get("bench"):
            report["bench"] = old["bench"]

    if "bench" not in skip:
        from slm_tasks.adapters.bench import bench

        rec = bench(args.model, runs=3, pause_s=1.0, n_threads=args.threads, protocols=["llama-bench"], progress=False)
        report["bench"] = rec["bench"]
        (out / "bench.json").write_text(json.dumps(rec, indent=2))

    ours = lambda extra="": (  # noqa: E731
        lm_eval(sys.executable)
        + [
            "--model",
            "slm-llamacpp",
            "--model_args",  # noqa: E731
            f"model={args.model},n_threads={args.threads}{extra}",
        ]
    )
    mc = {"tasks": tasks, "ref": "b"}
    gen_facts = {"tasks": gen_tasks, "ref": "b-gen"}
    if "a" not in skip:
        report["runs"]["a"] = _run(ours() + ["--output_path", str(out / "a")] + common, env, out / "a.log", **mc)
        if gen_tasks:
            report["runs"]["a-gen"] = _run(
                ours() + ["--output_path", str(out / "a-gen")] + gen, env, out / "a-gen.log", **gen_facts
            )

    for kind in filter(None, args.dequantise.split(",")):
        key = f"a-{kind}"
        report["runs"][key] = _run(
            ours(f",dequantise={kind}") + ["--output_path", str(out / key)] + common,
            env,
            out / f"{key}.log",
            dequantise=kind,
            **mc,
        )

    if "b" not in skip and args.hf_python:
        hf_dir = out / "hf-model"
        if not (hf_dir / "config.json").exists():
            report["export"] = _run(
                [args.hf_python, __file__, "export-hf", "--gguf", str(gguf), "--out", str(hf_dir)],
                env,
                out / "export.log",
            )
        cmd = lm_eval(args.hf_python) + [
            "--model",
            "hf",
            "--model_args",
            f"pretrained={hf_dir},dtype=float32",
            "--device",
            "cpu",
            "--batch_size",
            args.hf_batch,
        ]
        report["runs"]["b"] = _run(cmd + ["--output_path", str(out / "b")] + common, env, out / "b.log", tasks=tasks)
        if gen_tasks:
            report["runs"]["b-gen"] = _run(
                cmd + ["--output_path", str(out / "b-gen")] + gen, env, out / "b-gen.log", tasks=gen_tasks
            )

    if "c" not in skip and args.hf_python:
        port = 8765
        server = subprocess.Popen(
            [
                args.hf_python,
                "-m",
                "llama_cpp.server",
                "--model",
                str(gguf),
                "--n_ctx",
                "2048",
                "--n_threads",
                str(args.threads),
                "--port",
                str(port),
            ],
            stdout=open(out / "server.log", "w"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            if _wait_port(port, 120):
                report["gguf_probe"] = _gguf_probe(port, args.model)
            if args.gguf_limit > 0 and "gguf_probe" in report:
                cmd = lm_eval(args.hf_python) + [
                    "--model",
                    "gguf",
                    "--model_args",
                    f"base_url=http://127.0.0.1:{port}",
                    "--tasks",
                    ",".join(tasks),
                    "--limit",
                    str(args.gguf_limit),
                    "--log_samples",
                    "--output_path",
                    str(out / "c"),
                ]
                report["runs"]["c"] = _run(
                    cmd, env, out / "c.log", timeout=args.gguf_timeout, limit=args.gguf_limit, **mc
                )
            elif "gguf_probe" not in report:
                report["runs"]["c"] = {"rc": None, "error": "server did not start (see server.log)", **mc}
        finally:
            server.terminate()
            server.wait(timeout=30)

    parsed = {k: _results(out / k) for k in report["runs"]}
    for k, (res, chosen, n_requests) in parsed.items():
        run = report["runs"][k]
        run["eval_s"] = float(res["total_evaluation_time_seconds"]) if res else None
        run["acc"] = _scores(res, run["tasks"])
        run["n_docs"] = len(chosen)
        run["requests"] = n_requests
        if res and "slm_cost" in res.get("config", {}):
            run["cost"] = res["config"]["slm_cost"]["run"]
            run["tokens"] = run["cost"]["prompt_tokens"]
        elif k == "b" and res:
            run["tokens"] = _hf_tokens(out / "b", args.model)
        if run.get("ref") in parsed and parsed[run["ref"]][1]:
            ref = parsed[run["ref"]][1]
            both = [key for key in chosen if key in ref]
            run["agreement_with_b"] = (sum(chosen[key] == ref[key] for key in both) / len(both)) if both else None
            run["agreement_docs"] = len(both)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    md = render(report)
    (out / "report.md").write_text(md)
    print(md)
    return 0


def _f(x, fmt="{:.1f}"):
    return "n/a" if x is None else fmt.format(x)


def render(report: dict) -> str:
    runs = report["runs"]
    names = {"a": "(a) slm-llamacpp", "b": "(b) hf fp32 (dequantised GGUF)", "c": "(c) gguf via llama_cpp.server"}
    names.update({k: f"(a') slm-llamacpp dequantise={r['dequantise']}" for k, r in runs.items() if r.get("dequantise")})
    names.update({"a-gen": "(a) slm-llamacpp, generation tasks", "b-gen": "(b) hf fp32, generation tasks"})
    lines = [
        f"model `{report['model']}`, {len(report['tasks'])} tasks, --limit {report['limit']} per task, "
        + (
            f"{len(report['gen_tasks'])} generation tasks, --limit {report['gen_limit']} each, "
            if report.get("gen_tasks")
            else ""
        )
        + f"{report['threads']} threads",
        "",
    ]
    lines += [
        "| backend | docs | requests | tokens evaluated | eval wall s | process wall s | requests/s "
        "| tokens/s (evaluated) | mean acc | agreement with (b) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    a_cost = runs.get("a", {}).get("cost") or {}
    for k, r in runs.items():
        accs = [v for v in (r.get("acc") or {}).values() if v is not None]
        tok_s = r["cost"]["throughput_tok_s"] if r.get("cost") else None
        req_s = r["requests"] / r["eval_s"] if r.get("eval_s") else None
        agree = r.get("agreement_with_b")
        lines.append(
            f"| {names[k]} | {r.get('n_docs', 0)} | {r.get('requests', 0)} | {_f(r.get('tokens'), '{:,}')} | "
            f"{_f(r.get('eval_s'))} | "
            f"{_f(r.get('process_wall_s'))} | {_f(req_s)} | {_f(tok_s)} | {_f(sum(accs) / len(accs) if accs else None, '{:.3f}')} | "  # noqa: E501
            f"{_f(agree * 100 if agree is not None else None, '{:.1f}%')} |"
        )
    lines.append("")
    lines += ["| task | " + " | ".join(names[k] for k in runs) + " |", "|---|" + "---:|" * len(runs)]
    for t in report["tasks"] + report.get("gen_tasks", []):
        lines.append(f"| {t} | " + " | ".join(_f(runs[k].get("acc", {}).get(t), "{:.3f}") for k in runs) + " |")
    for k in [k for k in runs if k.startswith("a")]:
        ref = runs.get(runs[k].get("ref"), {})
        if runs[k].get("eval_s") and ref.get("eval_s"):
            lines += [
                "",
                f"speed-up {names[k]} over {names[runs[k]['ref']]}, "
                f"lm-eval evaluation time: {ref['eval_s'] / runs[k]['eval_s']:.2f}x",
            ]
    whole = [runs.get(k, {}).get("eval_s") for k in ("a", "a-gen", "b", "b-gen")]
    if all(whole):
        lines += [
            "",
            f"whole profile (multiple choice + generation), lm-eval evaluation time: (a) "
            f"{whole[0] + whole[1]:.1f} s, (b) {whole[2] + whole[3]:.1f} s: "
            f"{(whole[2] + whole[3]) / (whole[0] + whole[1]):.2f}x",
        ]
    for p in report.get("gguf_probe", []):
        lines.append(
            f"(c) probe {p['context']!r} + {p['continuation']!r}: gguf {p['gguf']:.4f}, "
            f"slm-llamacpp {p['slm_llamacpp']:.4f}"
        )
    bench = report.get("bench")
    if bench and a_cost:
        pp = bench["pp_tok_s"]["median"]
        bound = a_cost["prompt_tokens"] / pp
        lines += [
            f"compute bound for (a): {a_cost['prompt_tokens']} tokens evaluated / {pp:.1f} tok/s (pp512 median) "
            f"= {bound:.1f} s; adapter wall {a_cost['wall_s']:.1f} s -> {bound / a_cost['wall_s'] * 100:.0f}% "
            f"of the bound"
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
