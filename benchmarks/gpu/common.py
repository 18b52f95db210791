"""Shared by the GPU device check (device_check.py and its stage modules), its llama.cpp
reference (reference.py) and the packer (pack.py): which tasks the check runs with which
engine settings, what mirror files they read, and per-document digests of lm-eval samples
with their agreement.

Nothing here imports lm-eval, torch or vLLM at module level.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TASK_DIR = REPO / "task_configs"
# The generation task of stage 2 and the 0-shot pair of stage 3 (lm-eval's built-in names
# and ours: the same prompts and documents, tests/test_prompt_parity.py).
GEN_TASK = "slm_gsm8k_lite"
FULL_SLM = ["slm_arc_easy", "slm_openbookqa"]
FULL_BUILTIN = ["arc_easy", "openbookqa"]
BUILTIN_TO_SLM = dict(zip(FULL_BUILTIN, FULL_SLM))
MC_GROUPS = ["slm_commonsense_lite", "slm_problem_solving_lite"]  # the lite multiple-choice domains
# vLLM engine settings of stages 2-3: the GPU baseline's memory share, and the context length
GPU_MEM = 0.5
MAX_LEN = 2048


# --- task YAMLs ------------------------------------------------------------------------


def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    return Loader


def task_yamls() -> dict[str, Path]:
    """task or group name -> its YAML file, over task_configs/."""
    import yaml

    out = {}
    for path in sorted(TASK_DIR.rglob("*.yaml")):
        cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_yaml_loader()) or {}
        name = cfg.get("task") if isinstance(cfg.get("task"), str) else cfg.get("group")
        if name:
            out[name] = path
    return out


def task_config(name: str, index: dict[str, Path] | None = None) -> dict:
    """A task's YAML with its ``include`` chain merged (the including file wins)."""
    import yaml

    index = index or task_yamls()
    path = index[name]
    cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_yaml_loader()) or {}
    chain = [cfg]
    while "include" in chain[-1]:
        inc = path.parent / chain[-1]["include"]
        chain.append(yaml.load(inc.read_text(encoding="utf-8"), Loader=_yaml_loader()) or {})
        path = inc
    merged: dict = {}
    for part in reversed(chain):
        merged.update({k: v for k, v in part.items() if k != "include"})
    return merged


def mc_lite_tasks() -> list[str]:
    """The lite multiple-choice tasks: the tasks of the commonsense and problem-solving
    lite groups, in the groups' order."""
    index = task_yamls()
    out = []
    for group in MC_GROUPS:
        out += list(task_config(group, index)["task"])
    return out


def mirror_datasets(tasks: list[str]) -> list[tuple[str, str | None]]:
    """(hub_id, config) each task reads through slm_tasks.data.load."""
    index = task_yamls()
    seen = []
    for name in tasks:
        kw = task_config(name, index).get("dataset_kwargs") or {}
        key = (kw["hub_id"], kw.get("hub_config"))
        if key not in seen:
            seen.append(key)
    return seen


def slm_task_manager():
    """A TaskManager that indexes only our task folder, named explicitly (it works whether
    or not the activation hook indexes it too)."""
    from slm_tasks import activation
    from slm_tasks.paths import task_dir

    activation.install()
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=False, include_path=str(task_dir()))


# --- digests of lm-eval samples ---------------------------------------------------------


def _num(x) -> float:
    return float(x)


def digest(samples: dict[str, list[dict]]) -> dict[str, dict[str, dict]]:
    """task -> doc_id -> what the document came out as.

    Multiple choice: ``lls`` (log-likelihood per choice), ``pick`` (argmax), ``acc`` (lm-eval's
    per-document value; truthfulqa_mc2's is a probability mass). Generation: ``text`` (raw),
    and per filter the extracted answer and ``exact_match``.
    """
    out: dict[str, dict[str, dict]] = {}
    for task, rows in samples.items():
        docs: dict[str, dict] = {}
        for row in rows:
            key = str(row["doc_id"])
            resps = row.get("resps") or []
            first = resps[0][0] if resps and resps[0] else None
            if isinstance(first, str) or first is None:  # generation: one text per request
                entry = docs.setdefault(
                    key, {"text": first, "answer": {}, "exact_match": {}, "prompt_hash": row.get("prompt_hash")}
                )
                filtered = row.get("filtered_resps")
                entry["answer"][row.get("filter", "none")] = filtered[0] if isinstance(filtered, list) else filtered
                entry["exact_match"][row.get("filter", "none")] = row.get("exact_match")
            else:  # loglikelihood: [[(ll, is_greedy)] per choice]
                lls = [_num(r[0][0]) for r in resps]
                docs[key] = {
                    "lls": lls,
                    "pick": max(range(len(lls)), key=lls.__getitem__),
                    "acc": None if row.get("acc") is None else _num(row["acc"]),
                    "prompt_hash": row.get("prompt_hash"),
                }
        out[task] = docs
    return out


def _stats(values: list[float]) -> dict:
    if not values:
        return {"max": None, "mean": None}
    return {"max": max(values), "mean": sum(values) / len(values)}


def agreement(a: dict[str, dict], b: dict[str, dict]) -> dict:
    """Per-document agreement of two digests of one task (documents both have)."""
    common = sorted(set(a) & set(b), key=lambda k: (len(k), k))
    if not common:
        return {"docs": 0}
    first = a[common[0]]
    hashed = [k for k in common if a[k].get("prompt_hash") and b[k].get("prompt_hash")]
    # the same prompt text (lm-eval's prompt_hash): both sides built the same requests
    same_prompt = sum(a[k]["prompt_hash"] == b[k]["prompt_hash"] for k in hashed) / len(hashed) if hashed else None
    if "lls" in first:
        picks = sum(a[k]["pick"] == b[k]["pick"] for k in common)
        same_acc = sum(
            a[k]["acc"] is not None and b[k]["acc"] is not None and abs(a[k]["acc"] - b[k]["acc"]) < 1e-9
            for k in common
        )
        deltas = [abs(x - y) for k in common for x, y in zip(a[k]["lls"], b[k]["lls"])]
        acc_a = [a[k]["acc"] for k in common if a[k]["acc"] is not None]
        acc_b = [b[k]["acc"] for k in common if b[k]["acc"] is not None]
        return {
            "docs": len(common),
            "same_prompt": same_prompt,
            "same_pick": picks / len(common),
            "same_acc": same_acc / len(common),
            "differing_docs": len(common) - picks,
            "requests": len(deltas),
            "ll_abs_delta": _stats(deltas),
            "acc_a": sum(acc_a) / len(acc_a) if acc_a else None,
            "acc_b": sum(acc_b) / len(acc_b) if acc_b else None,
        }
    same_text = sum(a[k]["text"] == b[k]["text"] for k in common)
    prefix = [_common_prefix(a[k]["text"] or "", b[k]["text"] or "") for k in common]
    filters = sorted(set(first["answer"]))
    answers = {f: sum(a[k]["answer"].get(f) == b[k]["answer"].get(f) for k in common) / len(common) for f in filters}
    em = {
        f: {
            "a": _mean([a[k]["exact_match"].get(f) for k in common]),
            "b": _mean([b[k]["exact_match"].get(f) for k in common]),
        }
        for f in filters
    }
    return {
        "docs": len(common),
        "same_prompt": same_prompt,
        "same_text": same_text / len(common),
        "same_answer": answers,
        "common_prefix_chars_mean": sum(prefix) / len(prefix),
        "exact_match": em,
    }


def _mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _common_prefix(x: str, y: str) -> int:
    n = 0
    for c, d in zip(x, y):
        if c != d:
            break
        n += 1
    return n


def compare_digests(a: dict, b: dict, rename: dict[str, str] | None = None) -> dict:
    """Agreement per task of two digests; ``rename`` maps b's task names to a's."""
    rename = rename or {}
    b = {rename.get(t, t): docs for t, docs in b.items()}
    out = {t: agreement(a[t], b[t]) for t in a if t in b}
    mc = [v for v in out.values() if "same_pick" in v]
    if mc:
        docs = sum(v["docs"] for v in mc)
        out["_all_multiple_choice"] = {
            "docs": docs,
            "tasks": len(mc),
            "same_pick": sum(v["same_pick"] * v["docs"] for v in mc) / docs,
            "differing_docs": sum(v["differing_docs"] for v in mc),
            "ll_abs_delta_max": max((v["ll_abs_delta"]["max"] or 0.0) for v in mc),
        }
    return out


# --- small file helpers -----------------------------------------------------------------


def read_json(path: Path):
    """The JSON in ``path``, or None when a stage left no (whole) file."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, obj) -> None:
    """Write atomically (a reader, or a killed run, never sees half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=False, default=_jsonable))
    os.replace(tmp, path)


def _jsonable(x):
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    if hasattr(x, "item"):
        return x.item()
    return str(x)


def slim_samples(samples: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """lm-eval samples without the documents and prompts (the digests need neither)."""
    keep = (
        "doc_id",
        "target",
        "resps",
        "filtered_resps",
        "filter",
        "metrics",
        "acc",
        "acc_norm",
        "exact_match",
        "prompt_hash",
    )
    return {t: [{k: r[k] for k in keep if k in r} for r in rows] for t, rows in samples.items()}
