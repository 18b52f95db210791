"""The run plan: requests per phase counted before a run equal what lm-eval then builds."""

from collections import Counter

import pytest

from slm_tasks import run_plan
from slm_tasks.adapters.llamacpp import LlamaCppLM


@pytest.mark.parametrize(
    "tasks,limit", [(["slm_arc_easy_lite", "slm_gsm8k_lite", "slm_truthfulqa_mc2"], 5), (["slm_icl_lite"], 2)]
)
def test_planned_requests_equal_the_requests_lm_eval_builds(tm, tasks, limit):
    loaded = run_plan.preload(tm, tasks)
    plan = run_plan.count(loaded, limit)
    built = Counter()
    for task in loaded["tasks"].values():
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        built.update(inst.request_type for inst in task.instances)
    assert plan.requests == dict(built)
    assert tm.load(tasks) is loaded  # simple_evaluate gets the same objects: no second load or draw


def test_the_header_names_what_the_mirror_lacks(tm, hub):
    plan = run_plan.count(run_plan.preload(tm, ["slm_icl_lite"]), 1)
    spec = LlamaCppLM.resolve({"model": "smollm2-135m", "n_threads": "2"})
    lines = run_plan.header(plan, spec, str(hub))
    text = "\n".join(lines)
    assert "re-encoded to f16 for scoring" in text and "2 threads" in text
    assert "Rowan/hellaswag ('train')" in text and "slm_icl_hellaswag_5shot_lite" in text
    stored = LlamaCppLM.resolve({"model": "smollm2-135m", "dequantise": "stored"})
    assert "weights as stored)" in run_plan.header(plan, stored, str(hub))[0]


def test_a_run_compiles_each_prompt_template_once_and_builds_the_same_requests(tm, monkeypatch):
    """slm-suite's run keeps lm-eval's compiled Jinja templates (lm-eval compiles one per
    document and use); the requests built are those lm-eval builds without it."""
    from jinja2 import Environment
    from lm_eval import utils

    from slm_tasks.api import _compiled_templates

    tasks = ["slm_arc_easy_lite", "slm_mmlu_lite", "slm_gsm8k_lite"]

    def build():
        loaded = tm.load(tasks)
        for task in loaded["tasks"].values():
            task.set_fewshot_seed(seed=1234)  # the same few-shot draw both times
            task.build_all_requests(limit=8, rank=0, world_size=1)
        return {
            name: [(i.request_type, i.doc_id, i.idx, i.args) for i in task.instances]
            for name, task in loaded["tasks"].items()
        }

    compiles = Counter()
    real = Environment.compile

    def counting(self, source, *args, **kwargs):
        compiles[source] += 1
        return real(self, source, *args, **kwargs)

    monkeypatch.setattr(Environment, "compile", counting)
    plain = build()
    plain_compiles = sum(compiles.values())
    compiles.clear()
    with _compiled_templates():
        cached = build()
    assert "from_string" not in vars(utils.env)  # the environment is lm-eval's again afterwards
    assert cached == plain and sum(len(v) for v in plain.values()) > 50
    assert max(compiles.values()) == 1 and sum(compiles.values()) < plain_compiles / 10, (compiles, plain_compiles)
