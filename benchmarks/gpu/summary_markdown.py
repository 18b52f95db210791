"""summary.md: the device check's summary.json as tables, one section per stage."""

from __future__ import annotations

import json

import common


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
    lines = [
        f"# slm-vllm device check ({s.get('mode')})",
        "",
        f"started {s.get('started')}, elapsed {s.get('elapsed_s')} s",
        "",
    ]
    env = s.get("env", {})
    lines += [
        f"- GPU: {env.get('nvidia_smi') or '–'}",
        f"- packages: {env.get('packages')}",
        f"- settings: {json.dumps({k: v for k, v in s.get('settings', {}).items() if k != 'mc_tasks'})}",
        "",
    ]
    t = st.get("tests")
    if t:
        lines += [
            "## 1. pytest -m vllm",
            "",
            (
                f"{t.get('status')}: {t.get('tests')} tests, {t.get('failures')} failed, {t.get('errors')} errors, "
                f"{t.get('skipped')} skipped, {t.get('wall_s')} s"
            ),
            "",
        ]
        for c in t.get("cases", []):
            lines.append(f"- `{c['test']}` {c['time_s']:.1f} s: {c['result']}")
        lines.append("")
    lite = st.get("lite")
    if lite:
        lines += [
            "## 2. lite multiple choice + generation on slm-vllm",
            "",
            f"status: {lite.get('status')}; phases: {lite.get('phases')}; engine: {lite.get('engine')}",
            "",
            "Generation rows: exact match (strict) and the share of documents with the same extracted answer.",
            "",
        ]
        agree = lite.get("agreement_with_reference") or {}
        lines += [
            "| task | docs | acc (slm-vllm) | acc (reference) | same pick | max abs Δll |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for part in ("lite", "gen"):
            for task, res in ((lite.get(part) or {}).get("results") or {}).items():
                a = agree.get(task, {})
                if "same_pick" in a or part == "lite":
                    acc, ref, same = res.get("acc,none"), a.get("acc_b"), a.get("same_pick")
                else:  # generation: exact match (strict) and the same extracted answer
                    em = (a.get("exact_match") or {}).get("strict-match") or {}
                    acc, ref = res.get("exact_match,strict-match"), em.get("b")
                    same = (a.get("same_answer") or {}).get("strict-match")
                lines.append(
                    f"| {task} | {a.get('docs', '–')} | {_f(acc)} | {_f(ref)} | {_f(same)} | "
                    f"{_f((a.get('ll_abs_delta') or {}).get('max'))} |"
                )
        if "_all_multiple_choice" in agree:
            lines += ["", f"all multiple choice: {agree['_all_multiple_choice']}"]
        lines += ["", f"cost: {json.dumps(lite.get('cost_summary'))}", ""]
    base = st.get("baselines")
    if base:
        lines += [
            "## 3. arc_easy + openbookqa, 0-shot, three models",
            "",
            "| model | import lm-eval | import backend | engine start | task index + load | scoring | contexts + metrics | child wall | arc_easy acc | openbookqa acc |",  # noqa: E501
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for kind in ("slm-vllm", "vllm", "hf"):
            r = base.get(kind)
            if not r:
                continue
            ph, full = r.get("phases") or {}, r.get("full") or {}
            res = full.get("results") or {}
            acc = {
                k: (res.get(k) or res.get(common.BUILTIN_TO_SLM.get(k, k)) or {}).get("acc,none")
                for k in ("arc_easy", "openbookqa")
            }
            acc = {
                k: v if v is not None else (res.get(common.BUILTIN_TO_SLM[k]) or {}).get("acc,none")
                for k, v in acc.items()
            }
            lines.append(
                f"| {kind} | {_f(ph.get('import_lm_eval_s'), 1)} | {_f(ph.get('import_backend_s'), 1)} | "
                f"{_f(ph.get('engine_start_s'), 1)} | {_f(_add(ph.get('index_builtin_tasks_s'), full.get('task_load_s')), 1)} | "  # noqa: E501
                f"{_f(full.get('scoring_s'), 1)} | "
                f"{_f(full.get('contexts_and_metrics_s'), 1)} | {_f(r.get('wall_s'), 1)} | {_f(acc['arc_easy'])} | "
                f"{_f(acc['openbookqa'])} |"
            )
        lines.append("\nslm-vllm's process also ran stage 2: its import and engine start are shared, its wall is both.")
        for pair, a in (base.get("agreement") or {}).items():
            lines.append(f"\n{pair}: {json.dumps(a.get('_all_multiple_choice'))}")
        lines.append("")
    lp = st.get("logprobs")
    if lp:
        lines += [
            "## 4. vLLM prompt log-probs vs a torch forward (logits at scored positions only)",
            "",
            f"{json.dumps({k: lp.get(k) for k in ('status', 'requests', 'docs', 'dtype', 'torch_forward_s', 'torch_tok_s', 'll_abs_delta', 'same_pick', 'same_greedy', 'slm_vllm', 'error')})}",  # noqa: E501
            "",
        ]
    return "\n".join(lines) + "\n"


# === command line ========================================================================
