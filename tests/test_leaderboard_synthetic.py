"""Writers of synthetic lm-eval runs for edge cases (used by the leaderboard and gate tests).

The files copy the layout of a real lm-eval 0.4.13 run (tests/fixtures/results): the
results JSON keys, samples lines and hashes are computed the way lm-eval computes them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "results"
REAL_RUNS = sorted((FIXTURES / "dummy-limit20").rglob("results_*.json"))
COST_FIXTURE = FIXTURES / "cost-record.example.json"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_run(
    root: Path,
    model: str,
    tasks: dict[str, list[float]],
    *,
    stamp: str = "2026-01-01T00-00-00.000000",
    version: float = 1.0,
    versions: dict | None = None,
    limit=None,
    samples: bool = True,
    prompt_suffix: str = "",
    cost: dict | None = None,
    cost_in_config: bool = False,
    n_choices: int = 4,
    metric: str = "acc",
    flt: str = "none",
    stderr: bool = True,
    docs_of: dict[str, str] | None = None,
    n_shot: dict[str, int] | None = None,
) -> Path:
    """Write ``root/<model>/results_<stamp>.json`` (+ samples, + cost sidecar); return its path.

    ``tasks`` maps task name -> per-doc outcomes (0/1 or any floats) of ``metric``;
    ``docs_of`` maps a task to the task whose documents it scores (ICL variants share theirs).
    """
    template = json.loads(REAL_RUNS[0].read_text())
    base_cfg = template["configs"]["slm_arc_easy"]
    out = Path(root) / model
    out.mkdir(parents=True, exist_ok=True)
    res = copy.deepcopy(template)
    res.update(
        {
            "results": {},
            "configs": {},
            "versions": {},
            "n-shot": {},
            "higher_is_better": {},
            "n-samples": {},
            "task_hashes": {},
            "model_name": model,
            "model_name_sanitized": model,
            "group_subtasks": {t: [] for t in tasks},
        }
    )
    res["config"] = dict(res["config"], limit=limit, model_args={"model": model})
    for task, outcomes in tasks.items():
        n = len(outcomes)
        mean = sum(outcomes) / n if n else 0.0
        sd = math.sqrt(sum((x - mean) ** 2 for x in outcomes) / (n - 1)) if n > 1 else 0.0
        key = f"{metric},{flt}"
        res["results"][task] = {"name": task, "alias": task, "sample_len": n, key: mean}
        if stderr:
            res["results"][task][f"{metric}_stderr,{flt}"] = sd / math.sqrt(n) if n else 0.0
        cfg = copy.deepcopy(base_cfg)
        cfg["task"] = task
        cfg["task_alias"] = task
        res["configs"][task] = cfg
        res["versions"][task] = (versions or {}).get(task, version)
        res["n-shot"][task] = (n_shot or {}).get(task, 0)
        res["higher_is_better"][task] = {metric: True}
        res["n-samples"][task] = {"original": n, "effective": n if limit is None else min(n, int(limit))}
        lines = []
        for i, v in enumerate(outcomes):
            doc = f"{(docs_of or {}).get(task, task)} document {i}"
            prompt = f"Question: {doc}{prompt_suffix}\nAnswer:"
            lines.append(
                {
                    "doc_id": i,
                    "doc": {"text": doc},
                    "target": "0",
                    "arguments": {
                        f"gen_args_{k}": {"arg_0": prompt, "arg_1": f" choice {k}"} for k in range(n_choices)
                    },
                    "resps": [],
                    "filtered_resps": [],
                    "filter": flt,
                    "metrics": [metric],
                    "doc_hash": sha(doc),
                    "prompt_hash": sha(prompt),
                    "target_hash": sha("0"),
                    metric: v,
                }
            )
        res["task_hashes"][task] = sha("".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in lines))
        if samples:
            with open(out / f"samples_{task}_{stamp}.jsonl", "w") as f:
                for s in lines:
                    f.write(json.dumps(s) + "\n")
    if not samples:
        res.pop("task_hashes")
    if cost is not None and cost_in_config:
        res["config"]["slm_cost"] = cost
    path = out / f"results_{stamp}.json"
    path.write_text(json.dumps(res, indent=2))
    if cost is not None and not cost_in_config:
        path.with_suffix(".cost.json").write_text(json.dumps(cost, indent=2))
    return path


def cost_record(name: str, decode_ms: float | None, peak_bytes: int | None, **run) -> dict:
    """A cost record (schema slm-suite.cost/1) based on the committed example, with test values."""
    rec = json.loads(COST_FIXTURE.read_text())
    rec["model"]["name"] = name
    rec["run"].update({"decode_ms_per_token": decode_ms, "peak_rss_bytes": peak_bytes, **run})
    rec["bench"] = None
    return rec


def outcomes(n: int, correct: int) -> list[float]:
    return [1.0] * correct + [0.0] * (n - correct)
