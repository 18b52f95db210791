"""The sweep's comparisons, gate verdicts and board, from its finished runs and bench records
(``slm_tasks/quant_sweep.py`` makes them)."""

from __future__ import annotations

from pathlib import Path

from slm_tasks.results.cost_record import record_of_results


def _median(bench: dict | None, protocol: str, key: str) -> float | None:
    entry = ((bench or {}).get("bench") or {}).get("protocols", {}).get(protocol, {}).get(key)
    return entry.get("median") if isinstance(entry, dict) else None


def runtime(record: dict | None) -> dict:
    """The board's runtime columns from a bench cost record (medians over the runs)."""
    b = (record or {}).get("bench") or {}
    return {
        "peak_memory_bytes": b.get("peak_rss_bytes"),
        "ttft_ms": _median(record, "survey", "ttft_ms"),
        "decode_ms_per_token": _median(record, "llama-bench", "tg128_ms_per_token"),
        "prefill_tok_s": _median(record, "llama-bench", "pp512_tok_s"),
        "pp50_tok_s": _median(record, "survey", "pp_tok_s"),
        "tg50_ms_per_token": _median(record, "survey", "tg_ms_per_token"),
    }


def report(runs, model, origin, profile, tasks, spec_name, out: Path, policy=None, allow_limit=False) -> dict:
    """Compare every format with the reference (``runs[0]``, the most precise), gate it, and
    write the board into ``out``; returns the board."""
    from slm_tasks.adapters.quantise import BITS
    from slm_tasks.leaderboards import quant_board, quant_compare
    from slm_tasks.leaderboards.ingest import load_run
    from slm_tasks.leaderboards.outputs import write_folder
    from slm_tasks.leaderboards.quant_gate import gate_format, load_quant_policy
    from slm_tasks.leaderboards.spec import load_spec

    pol = load_quant_policy(policy)
    spec = load_spec(spec_name)
    ref = runs[0]
    ref_run = load_run(ref.results_file)
    level = pol.domain_level
    rows, notes = [], []
    for r in runs:
        run = ref_run if r is ref else load_run(r.results_file)
        score = spec.score(run.results)
        row = {
            "format": r.format,
            "reference": r is ref,
            "bits_per_weight": _bits(r.file_bytes, _params(r.results_file)) or BITS.get(r.format),
            "accuracy": score["overall"],
            "domain_scores": {d: v["value"] for d, v in score["domains"].items()},
            "file_bytes": r.file_bytes,
            "sha256": r.sha256,
            "quantise_s": r.quantise_s or None,
            "results_file": _relative(r.results_file, out),
            **runtime(r.bench),
        }
        if r is ref:
            row["verdict"] = "reference"
        else:
            quality = quant_compare.compare_runs(ref_run, run, spec)
            summary = quant_compare.summary(quality, level)
            row |= {k: summary[k] for k in ("kl_mean", "kl_p99", "same_answer", "identical_outputs")}
            row["domains"], row["tasks_compared"] = summary["domains"], summary["tasks"]
            result, _ = gate_format(
                ref.results_file,
                r.results_file,
                quality,
                pol,
                out=out / "gate" / r.format,
                allow_limit=allow_limit,
                labels=(ref.format, r.format),
            )
            r.verdict, r.exit_code = result.verdict, result.exit_code
            row["verdict"], row["exit_code"] = result.verdict, result.exit_code
        rows.append(row)
    if allow_limit:
        notes.append("smoke sweep (--limit): a subset of each task's documents; no format can pass the gate")
    board = {
        "model": model,
        "source": origin,
        "reference": ref.format,
        "profile": profile,
        "tasks": list(tasks),
        "spec": spec.name,
        "level": level,
        "policy": pol.describe() | {"gate": pol.gate.describe()},
        "bench_protocol": ((ref.bench or {}).get("bench") or {}).get("protocol"),
        "rows": rows,
        "notes": notes,
    }
    write_folder(out, quant_board.files(board))
    return board


def _relative(path: Path, out: Path) -> str:
    """A results file named inside the sweep's folder: the board publishes no local paths."""
    try:
        return str(Path(path).resolve().relative_to(Path(out).resolve()))
    except ValueError:
        return Path(path).name


def _bits(file_bytes: int, n_params: int) -> float | None:
    """The file's bits per parameter (llama.cpp's BPW, file header included)."""
    return 8 * file_bytes / n_params if n_params else None


def _params(results_file: Path) -> int:
    """The model's parameter count from its run's cost record (0 when it does not say)."""
    import json

    try:
        results = json.loads(Path(results_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    cost, _ = record_of_results(results)
    n = ((cost.raw if cost else {}).get("model") or {}).get("n_params")
    return int(n) if isinstance(n, (int, float)) else 0


def exit_code(runs, only: str | None = None) -> int:
    """The sweep's exit code, combined as the gate combines checks: 1 when a format failed,
    else 3 when one was not shown, else 0; ``only``: that format's own code."""
    gated = [r for r in runs if r.exit_code is not None]
    if only is not None:
        match = [r for r in gated if r.format == only]
        return match[0].exit_code if match else 0
    codes = {r.exit_code for r in gated}
    return 1 if 1 in codes else 3 if 3 in codes else 0
