"""Every task loads and builds requests offline from the mirror (lm-eval's dummy model)."""

import pytest

from slm_tasks.api import evaluate


def test_whole_suite_runs_on_the_dummy_model(mirror_env):
    results = evaluate("dummy", tasks=["slm_suite"], limit=2, log_samples=False, confirm_run_unsafe_code=True)
    groups = set(results["group_subtasks"])
    tasks = set(results["results"]) - groups
    for name in tasks:
        assert results["results"][name]["sample_len"] >= 1, name
    assert {"slm_hellaswag", "slm_mmlu", "slm_arc_challenge", "slm_truthfulqa_mc2"} <= tasks
    assert "slm_commonsense" in results["groups"] and "slm_problem_solving" in results["groups"]
    # every reported number states metric, shots and split
    for name in tasks:
        cfg = results["configs"][name]
        assert name in results["n-shot"]
        assert cfg.get("test_split") or cfg.get("validation_split")


def test_fewshot_without_examples_in_the_mirror_fails_clearly(mirror_env):
    from slm_tasks.fewshot import FewshotUnavailable

    with pytest.raises(FewshotUnavailable, match="Rowan/hellaswag has no 'train' split"):
        evaluate("dummy", tasks=["slm_hellaswag"], limit=1, num_fewshot=5, log_samples=False)


def test_unknown_task_is_one_clear_error(mirror_env):
    from slm_tasks.errors import SLMError

    with pytest.raises(SLMError, match="unknown task.*slm_nope"):
        evaluate("dummy", tasks=["slm_nope"], limit=1)


def test_metadata_names_the_mirror_when_the_variable_is_unset(hub, monkeypatch):
    monkeypatch.delenv("SLM_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    results = evaluate("dummy", tasks=["slm_arc_easy"], limit=2, data_dir=str(hub), log_samples=False)
    assert results["results"]["slm_arc_easy"]["sample_len"] == 2


def test_without_mirror_or_hub_the_error_says_how_to_go_offline(monkeypatch):
    from slm_tasks.data import SLMDataError, load

    monkeypatch.delenv("SLM_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(SLMDataError, match="slm_arc_easy.*Set SLM_DATA_DIR"):
        load(hub_id="allenai/ai2_arc", hub_config="ARC-Easy", eval_split="test", task="slm_arc_easy")


def test_groups_skip_fewshot_variants_the_mirror_cannot_feed(mirror_env, capfd):
    from slm_tasks.api import task_manager

    loaded = task_manager(include_defaults=False).load(["slm_icl_lite"])
    assert "slm_icl_arc_challenge_5shot_lite" in loaded["tasks"]  # ARC train is mirrored
    assert "slm_icl_hellaswag_0shot_lite" in loaded["tasks"]  # 0-shot needs no examples
    assert "slm_icl_hellaswag_5shot_lite" not in loaded["tasks"]
    assert "slm_icl_hellaswag_5shot_lite" not in loaded["group_map"]["slm_icl_5shot_lite"]
    err = capfd.readouterr().err
    assert (
        "skipping slm_icl_hellaswag_5shot_lite: 5-shot needs few-shot examples, but Rowan/hellaswag has no 'train' split"  # noqa: E501
        in err
    )
    assert "winogrande" not in err.split("skipping slm_icl_hellaswag_5shot_lite")[1].split("\n")[0]


def test_coding_tasks_need_the_unsafe_code_confirmation(mirror_env):
    from slm_tasks.errors import SLMError

    with pytest.raises(
        SLMError, match="slm_humaneval_lite executes model-written code: pass --confirm-run-unsafe-code"
    ):
        evaluate("dummy", tasks=["slm_humaneval_lite"], limit=1, log_samples=False)
