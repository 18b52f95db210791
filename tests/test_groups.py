"""Domain scores are plain averages of their tasks (as in the SLM survey)."""

import pytest

from slm_tasks.api import domain_summary, task_manager


def test_domain_groups_average_their_tasks_unweighted(mirror_env):
    tm = task_manager(include_defaults=False)
    group = tm.load(["slm_problem_solving"])["groups"]["slm_problem_solving"]
    leaves = sorted(t.task_name for t in group.get_all_tasks())
    assert leaves == ["slm_arc_challenge", "slm_arc_easy", "slm_mmlu"]
    # Synthetic per-task results with very different sizes: a size-weighted mean would be
    # dominated by mmlu (0.25); the plain mean is (0.8 + 0.4 + 0.25) / 3.
    metrics = {
        "slm_arc_easy": {"acc,none": 0.8, "acc_stderr,none": 0.01, "sample_len": 2376},
        "slm_arc_challenge": {"acc,none": 0.4, "acc_stderr,none": 0.02, "sample_len": 1172},
        "slm_mmlu": {"acc,none": 0.25, "acc_stderr,none": 0.004, "sample_len": 14042},
    }
    out = group.aggregate(metrics)
    assert out["acc,none"] == pytest.approx((0.8 + 0.4 + 0.25) / 3)
    assert out["acc_stderr,none"] == pytest.approx((0.01**2 + 0.02**2 + 0.004**2) ** 0.5 / 3)


def test_suite_groups_cover_every_domain_and_lite_mirrors_full(mirror_env):
    tm = task_manager(include_defaults=False)
    full = tm.load(["slm_suite"])["groups"]
    lite = tm.load(["slm_suite_lite"])["groups"]
    full_tasks = {t.task_name for t in full["slm_suite"].get_all_tasks()}
    lite_tasks = {t.task_name for t in lite["slm_suite_lite"].get_all_tasks()}
    assert {"slm_hellaswag", "slm_mmlu", "slm_truthfulqa_mc2"} <= full_tasks
    assert lite_tasks == {f"{t}_lite" for t in full_tasks}


def test_overall_score_is_the_mean_of_domain_scores():
    # the board spec defines the scores: domains from their tasks' rows, not lm-eval's group rows
    results = {
        "results": {
            "slm_boolq": {"acc,none": 0.6, "acc_stderr,none": 0.01},
            "slm_piqa": {"acc,none": 0.4, "acc_stderr,none": 0.01},  # commonsense: 0.5
            "slm_arc_easy": {"acc,none": 0.3, "acc_stderr,none": 0.02},  # problem solving: 0.3
            "slm_gsm8k": {"exact_match,strict-match": 0.1, "exact_match,flexible-extract": 0.4},  # math: 0.1
            "slm_icl_arc_challenge_5shot": {"acc,none": 0.9},  # a protocol, not a domain
            "slm_commonsense": {"acc,none": 0.99},  # a group row
            "slm_suite": {},
        }
    }
    summary = domain_summary(results)
    assert summary["overall"] == pytest.approx((0.5 + 0.3 + 0.1) / 3)
    assert summary["domains"]["math"]["tasks"]["slm_gsm8k"]["metric"] == "exact_match,strict-match"
    assert summary["domains"]["commonsense"]["tasks"]["slm_boolq"]["metric"] == "acc,none"
    assert summary["absent_domains"] == ["coding", "long_context"]
