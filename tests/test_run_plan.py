"""The run plan: requests per phase counted before a run equal what lm-eval then builds."""

from collections import Counter

import pytest

from slm_tasks import run_plan


@pytest.mark.parametrize("tasks,limit", [(["slm_arc_easy_lite", "slm_gsm8k_lite", "slm_truthfulqa_mc2"], 5),
                                         (["slm_icl_lite"], 2)])
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
    lines = run_plan.header(plan, "slm-llamacpp", "smollm2-135m", {"n_threads": "2"}, str(hub))
    text = "\n".join(lines)
    assert "re-encoded to f16 for scoring" in text and "2 threads" in text
    assert "Rowan/hellaswag ('train')" in text and "slm_icl_hellaswag_5shot_lite" in text
    stored = run_plan.header(plan, "slm-llamacpp", "smollm2-135m", {"dequantise": "stored"}, str(hub))[0]
    assert "weights as stored)" in stored
