"""In-context learning: slm_icl_<task>_<k>shot tasks, offline availability, and the ICL gain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slm_tasks import icl
from slm_tasks.icl_variants import available_variants
from slm_tasks.results.icl_gain import ICLError, format_gain_table, icl_gain, read_samples

REPO = Path(__file__).resolve().parents[1]
ICL_DIR = REPO / "task_configs" / "icl"


def load(tm, name):
    return tm.load([name])["tasks"][name]


def request_args(task, shots=None, limit=2):
    if shots is not None:
        task.set_config(key="num_fewshot", value=shots)
    task.set_fewshot_seed(seed=1234)
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    return [i.args for i in task.instances]


# --- the task files ----------------------------------------------------------------------


def test_every_protocol_cell_is_its_base_task_with_the_shot_count_pinned():
    """Each variant is the existing slm_ task (same data, prompt, metrics) at k shots."""
    from lm_eval.tasks._yaml_loader import load_yaml

    for base in icl.TASKS:
        for k in icl.SHOTS:
            for lite in (False, True):
                name = icl.task_name(base, k, lite)
                cfg = load_yaml(ICL_DIR / f"{name}.yaml", resolve_func=False)
                base_yaml = "problem_solving" if base in ("arc_challenge", "mmlu") else "commonsense"
                ref = load_yaml(REPO / "task_configs" / base_yaml / f"slm_{base}.yaml", resolve_func=False)
                assert cfg["task"] == name and cfg["num_fewshot"] == k
                assert cfg["metadata"]["icl_shots"] == k
                assert cfg["metadata"]["version"] == ref["metadata"]["version"]
                assert cfg["metadata"].get("lite_n") == (200 if lite else None)
                same = {key: cfg[key] for key in cfg if key not in ("task", "task_alias", "num_fewshot", "metadata")}
                assert same == {key: ref[key] for key in ref if key not in ("task", "task_alias", "metadata")}
    assert not list(ICL_DIR.glob("*truthfulqa*")), icl.NOT_APPLICABLE["truthfulqa_mc2"]


def test_builtin_truthfulqa_mc2_cannot_take_shots():
    """Why truthfulqa_mc2 has no ICL variants: lm-eval pins it at 0 shots, one split."""
    import lm_eval.tasks as lt
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(Path(lt.__file__).parent / "truthfulqa" / "truthfulqa_mc2.yaml", resolve_func=False)
    assert cfg["num_fewshot"] == 0  # the evaluator never overrides a YAML 0 with --num_fewshot
    assert cfg.get("training_split") is None and cfg["validation_split"] == "validation"
    assert not cfg.get("test_split")


@pytest.mark.parametrize(
    "name, builtin_yaml, hub_id",
    [
        ("slm_icl_arc_challenge_5shot", "arc/arc_challenge.yaml", "allenai/ai2_arc"),
        ("slm_icl_commonsense_qa_1shot", "commonsense_qa/default.yaml", "tau/commonsense_qa"),
        ("slm_icl_openbookqa_5shot", "openbookqa/openbookqa.yaml", "allenai/openbookqa"),
    ],
)
def test_requests_equal_lm_eval_builtin_at_the_same_shot_count(tm, mirror, name, builtin_yaml, hub_id):
    import lm_eval.tasks as lt
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    ours = load(tm, name)
    shots = ours.config.num_fewshot
    cfg = load_yaml(Path(lt.__file__).parent / builtin_yaml)
    for key in ("tag", "group", "include"):
        cfg.pop(key, None)
    cfg["dataset_path"] = str(mirror / hub_id)
    ref = ConfigurableTask(config=cfg)
    got = request_args(ours)
    assert got == request_args(ref, shots=shots)
    assert got[0][0].count("\n\n") >= shots  # the shots are really in the prompt


def test_lite_variants_score_the_same_docs_as_the_lite_tasks(tm):
    a = load(tm, "slm_icl_mmlu_5shot_lite").eval_docs
    b = load(tm, "slm_mmlu_lite").eval_docs
    assert len(a) == 200 and a["question"] == b["question"]
    assert (
        load(tm, "slm_icl_arc_challenge_0shot_lite").eval_docs["id"]
        == load(tm, "slm_arc_challenge_lite").eval_docs["id"]
    )


# --- offline availability -------------------------------------------------------------------


def test_mirror_without_train_splits_skips_those_shot_counts_with_the_reason(mirror):
    v = available_variants(["slm_icl", "slm_gsm8k"], data_dir=mirror)
    lacking = {"hellaswag": "Rowan/hellaswag", "piqa": "baber/piqa", "winogrande": "allenai/winogrande"}
    assert set(v.skipped) == {icl.task_name(b, k) for b in lacking for k in (1, 5)}
    for name, reason in v.skipped.items():
        base = icl.parse_name(name)[0]
        assert lacking[base] in reason and "'train' split" in reason
    # 0-shot runs whole (group kept); 1/5-shot groups are replaced by what can run
    assert v.run[0] == "slm_icl_0shot" and v.run[-1] == "slm_gsm8k"
    assert "slm_icl_arc_challenge_5shot" in v.run and "slm_icl_mmlu_1shot" in v.run
    assert not any(name in v.run for name in v.skipped) and "slm_icl" not in v.run


def test_every_variant_runs_from_the_hub(monkeypatch):
    monkeypatch.delenv("SLM_DATA_DIR", raising=False)
    v = available_variants(["slm_icl", "slm_icl_lite"])
    assert v.run == ["slm_icl", "slm_icl_lite"] and v.skipped == {}


def test_a_missing_fewshot_split_fails_clearly_instead_of_using_the_scored_split(tm):
    from slm_tasks.fewshot import FewshotUnavailable

    task = load(tm, "slm_icl_piqa_5shot")
    with pytest.raises(FewshotUnavailable, match=r"baber/piqa has no 'train' split") as err:
        request_args(task)
    assert "Rowan/hellaswag" not in str(err.value)  # a loaded task's sampler knows its own dataset
    assert request_args(load(tm, "slm_icl_piqa_0shot"))  # 0-shot still runs


# --- the gain ----------------------------------------------------------------------------


def fake_run(per_task: dict[str, tuple[list[float], list[float]]], shots=(0, 5), nshot=None):
    """lm-eval-shaped results + samples from per-document accuracies at two shot counts."""
    results, samples, n_shot = {}, {}, {}
    for base, per_shot in per_task.items():
        for k, xs in zip(shots, per_shot):
            name = icl.task_name(base, k)
            x = np.asarray(xs, float)
            results[name] = {"acc,none": x.mean(), "acc_stderr,none": x.std(ddof=1) / np.sqrt(len(x))}
            samples[name] = [
                {"doc_id": i, "doc_hash": f"h{i}", "filter": "none", "acc": float(v)} for i, v in enumerate(x)
            ]
            n_shot[name] = k if nshot is None else nshot
    return {"results": results, "n-shot": n_shot}, samples


def test_paired_gain_uses_per_document_differences():
    rng = np.random.default_rng(0)
    zero = rng.random(300) < 0.4
    five = zero | (rng.random(300) < 0.15)  # shots fix some errors, break none
    res, samples = fake_run({"arc_challenge": (zero, five)})
    g = icl_gain(res, samples)["tasks"]["arc_challenge"]
    d = five.astype(float) - zero.astype(float)
    assert g.method == "paired" and g.n == 300
    assert g.gain == pytest.approx(d.mean())
    assert g.stderr == pytest.approx(d.std(ddof=1) / np.sqrt(300))
    unpaired = icl_gain(res)["tasks"]["arc_challenge"]
    assert unpaired.method == "unpaired" and unpaired.gain == pytest.approx(g.gain)
    assert unpaired.stderr == pytest.approx(np.hypot(zero.std(ddof=1), five.std(ddof=1)) / np.sqrt(300))
    assert g.stderr < unpaired.stderr  # pairing removes the shared per-document variance
    lo, hi = g.ci95
    assert lo < g.gain < hi and hi - lo == pytest.approx(2 * 1.959964 * g.stderr)


def test_mean_gain_is_the_plain_average_over_tasks_that_ran_at_both_counts():
    res, samples = fake_run(
        {
            "arc_challenge": ([0, 0, 1, 1], [1, 1, 1, 1]),  # +0.5
            "mmlu": ([1, 0, 1, 0, 1, 0, 1, 0], [1, 0, 1, 0, 1, 0, 1, 1]),  # +0.125
        }
    )
    res["results"]["slm_icl_piqa_0shot"] = {"acc,none": 0.6, "acc_stderr,none": 0.01}  # no 5-shot
    out = icl_gain(res, samples)
    assert out["mean"].gain == pytest.approx((0.5 + 0.125) / 2)
    se = [out["tasks"][t].stderr for t in ("arc_challenge", "mmlu")]
    assert out["mean"].stderr == pytest.approx(np.sqrt(se[0] ** 2 + se[1] ** 2) / 2)
    assert out["mean"].tasks == ["arc_challenge", "mmlu"]
    assert "piqa" in out["skipped"] and "5-shot" in out["skipped"]["piqa"]
    table = format_gain_table(out)
    assert "| mean |" in table and "skipped" in table


def test_gain_refuses_runs_whose_shot_count_was_overridden():
    res, samples = fake_run({"arc_challenge": ([0, 1], [1, 1])}, nshot=3)
    with pytest.raises(ICLError, match="--num_fewshot"):
        icl_gain(res, samples)


def test_paired_gain_refuses_different_documents():
    res, samples = fake_run({"arc_challenge": ([0, 1, 1], [1, 1, 1])})
    samples["slm_icl_arc_challenge_5shot"].pop()
    with pytest.raises(ICLError, match="different documents"):
        icl_gain(res, samples)
    res, samples = fake_run({"arc_challenge": ([0, 1, 1], [1, 1, 1])})
    samples["slm_icl_arc_challenge_5shot"][0]["doc_hash"] = "other"
    with pytest.raises(ICLError, match="doc_hash"):
        icl_gain(res, samples)


def test_read_samples_takes_the_newest_file_per_task(tmp_path):
    import json

    for t, v in (("2026-01-01T10-00-00.1", 0.0), ("2026-01-02T10-00-00.1", 1.0)):
        (tmp_path / f"samples_slm_icl_mmlu_5shot_{t}.jsonl").write_text(json.dumps({"doc_id": 0, "acc": v}) + "\n")
    assert read_samples(tmp_path) == {"slm_icl_mmlu_5shot": [{"doc_id": 0, "acc": 1.0}]}
