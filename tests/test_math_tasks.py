"""Math tasks: slm_gsm8k, slm_minerva_math (one task over 7 subjects), slm_minerva_math500.

Each builds the same requests as lm-eval 0.4.13's built-in task on the same docs of the
offline mirror, and scores hand-written model outputs with lm-eval's own extraction and
equivalence code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("math_verify", reason="needs the [math] extra (lm-eval[math])")

REPO = Path(__file__).resolve().parents[1]
SUBJECTS = {  # hub config -> lm-eval's per-subject task YAML, in slm_minerva_math's order
    "algebra": "minerva_math_algebra.yaml",
    "counting_and_probability": "minerva_math_counting_and_prob.yaml",
    "geometry": "minerva_math_geometry.yaml",
    "intermediate_algebra": "minerva_math_intermediate_algebra.yaml",
    "number_theory": "minerva_math_num_theory.yaml",
    "prealgebra": "minerva_math_prealgebra.yaml",
    "precalculus": "minerva_math_precalc.yaml",
}


def ours(tm, name):
    return tm.load([name])["tasks"][name]


@pytest.fixture(scope="module")
def scorer(tm):
    """Tasks for scoring hand-written outputs, built once (loading MATH takes seconds)."""
    return {name: ours(tm, name) for name in ("slm_gsm8k", "slm_minerva_math")}


def builtin(yaml_rel, dataset_path, **overrides):
    """lm-eval's built-in task from its own YAML, reading a mirror folder directly."""
    import lm_eval.tasks as lt
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(Path(lt.__file__).parent / yaml_rel)
    for key in ("tag", "group", "include"):
        cfg.pop(key, None)
    cfg["dataset_path"] = str(dataset_path)
    cfg.update(overrides)
    return ConfigurableTask(config=cfg)


def request_args(task, limit=None, samples=None, seed=1234):
    """What the model receives: (context, gen_kwargs) per instance, as the evaluator builds them."""
    task.set_fewshot_seed(seed=seed)
    task.build_all_requests(limit=limit, samples=samples, rank=0, world_size=1)
    return [i.args for i in task.instances]


# --- prompt parity with lm-eval's built-ins ------------------------------------------


def test_gsm8k_requests_equal_builtin_5shot(tm, mirror):
    mine = ours(tm, "slm_gsm8k")
    ref = builtin("gsm8k/gsm8k.yaml", mirror / "openai/gsm8k")
    assert mine.config.num_fewshot == ref.config.num_fewshot == 5
    a, b = request_args(mine, limit=3), request_args(ref, limit=3)
    assert a == b
    context, gen_kwargs = a[0]
    assert context.count("Question:") == 6  # five shots from train + the test question
    assert gen_kwargs["until"] == ["Question:", "</s>", "<|im_end|>"]


def test_minerva_math_requests_equal_builtin_for_every_subject(tm, mirror):
    """One task over the 7 subjects: doc k of subject s is the same request as doc k of
    lm-eval's minerva_math_<s>."""
    mine = ours(tm, "slm_minerva_math")
    types = mine.eval_docs["type"]
    assert len(types) == 5000
    # subjects are concatenated in the order of SUBJECTS: where each one starts
    firsts = [i for i, t in enumerate(types) if i == 0 or types[i - 1] != t]
    assert len(firsts) == len(SUBJECTS)
    expected = []
    for yaml_name in SUBJECTS.values():
        ref = builtin(f"minerva_math/{yaml_name}", mirror / "EleutherAI/hendrycks_math")
        assert ref.config.num_fewshot == 4
        expected += request_args(ref, limit=1)
    got = request_args(mine, samples=firsts)
    assert got == expected
    context, gen_kwargs = got[0]
    assert context.count("Problem:") == 5  # four fixed Minerva shots + the problem
    assert gen_kwargs["until"] == ["Problem:"]


def test_minerva_math500_requests_equal_builtin(tm, mirror):
    mine = ours(tm, "slm_minerva_math500")
    ref = builtin("minerva_math/minerva_math500.yaml", mirror / "HuggingFaceH4/MATH-500")
    # minerva_math500.yaml includes the algebra YAML; load_yaml resolved it above.
    assert ref.config.dataset_name == "default"
    assert len(mine.eval_docs) == 500
    assert request_args(mine, limit=2) == request_args(ref, limit=2)


# --- lite subsets ----------------------------------------------------------------------


def test_lite_subsets_are_fixed_subsets_of_the_full_test_sets(tm):
    full = ours(tm, "slm_minerva_math").eval_docs
    lite = ours(tm, "slm_minerva_math_lite").eval_docs
    assert len(lite) == 200
    assert set(lite["problem"]) <= set(full["problem"])
    # stratified by subject, in proportion to its size (7 subjects, 5000 problems)
    counts = {t: lite["type"].count(t) for t in set(full["type"])}
    for t, n in counts.items():
        assert abs(n - 200 * full["type"].count(t) / 5000) <= 1, (t, n)

    g_full = ours(tm, "slm_gsm8k").eval_docs
    g_lite = ours(tm, "slm_gsm8k_lite").eval_docs
    assert len(g_lite) == 200 and set(g_lite["question"]) <= set(g_full["question"])
    assert ours(tm, "slm_gsm8k_lite").eval_docs["question"] == g_lite["question"]  # seeded


# --- answer extraction and equivalence -------------------------------------------------


def score_generation(task, doc, text):
    """Run lm-eval's filters and process_results on one model output: {metric,filter: value}."""
    from lm_eval.api.instance import Instance

    inst = Instance(request_type="generate_until", doc=doc, arguments=("", {}), idx=0)
    inst.resps = [text]
    out = {}
    for ensemble in task._filters:
        ensemble.apply([inst])
        for metric, value in task.process_results(doc, [inst.filtered_resps[ensemble.name]]).items():
            out[f"{metric},{ensemble.name}"] = value
    return out


GSM_DOC = {
    "question": "Tom has 3 boxes of 4 apples and buys 1,230 more. How many apples?",
    "answer": "3*4=<<3*4=12>>12 apples in boxes.\n12+1230=<<12+1230=1242>>1242\n#### 1242",
}


@pytest.mark.parametrize(
    "output, strict, flexible",
    [
        (" 3*4=12, and 12+1230=1242.\n#### 1242", 1, 1),
        (" He has 12 + 1,230 = $1,242 apples.\n#### 1,242", 1, 1),  # commas and $ ignored
        (" He has 12 + 1230 = 1242 apples in total.", 0, 1),  # no "####": flexible only
        (" 3*4=12 so 12+1230=1241.\n#### 1241", 0, 0),  # wrong
        (" I like apples.", 0, 0),  # malformed: no number at all
        ("", 0, 0),
    ],
)
def test_gsm8k_strict_and_flexible_extraction(scorer, output, strict, flexible):
    task = scorer["slm_gsm8k"]
    got = score_generation(task, GSM_DOC, output)
    assert got == {"exact_match,strict-match": strict, "exact_match,flexible-extract": flexible}


def math_doc(task, solution):
    import datasets

    ds = datasets.Dataset.from_list([{"problem": "p", "level": "Level 1", "type": "Algebra", "solution": solution}])
    return task.config.process_docs(ds)[0]


@pytest.mark.parametrize(
    "solution, output, exact, verified",
    [
        # the Minerva format, equal strings after normalisation
        (
            "So $x = \\boxed{\\frac12}$.",
            "x=1/2.\nFinal Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.",
            1,
            1,
        ),
        # sympy equivalence: 0.5 == 1/2
        ("So $x = \\boxed{\\frac12}$.", "Final Answer: The final answer is $0.5$. I hope it is correct.", 1, 1),
        # units are normalised away
        ("The side is $\\boxed{12}$ cm.", "Final Answer: The final answer is $12$ cm. I hope it is correct.", 1, 1),
        # tuples: sympy cannot parse them, identical normalised strings still count
        ("The point is $\\boxed{(1,2)}$.", "Final Answer: The final answer is $(1,2)$. I hope it is correct.", 1, 1),
        # wrong
        ("So $x = \\boxed{\\frac12}$.", "Final Answer: The final answer is $3$. I hope it is correct.", 0, 0),
        # right answer but not in the Minerva format: exact_match 0, math_verify finds it
        ("So $x = \\boxed{\\frac12}$.", "Hence $x = \\boxed{\\frac{1}{2}}$.", 0, 1),
        # malformed output
        ("So $x = \\boxed{\\frac12}$.", "Final Answer: ???", 0, 0),
    ],
)
def test_minerva_answer_normalisation_and_equivalence(scorer, solution, output, exact, verified):
    task = scorer["slm_minerva_math"]
    doc = math_doc(task, solution)
    assert score_generation(task, doc, output) == {
        "exact_match,strict-match": exact,
        "math_verify,strict-match": verified,
    }


# --- the domain group ------------------------------------------------------------------


def test_slm_math_domain_is_plain_average_of_strict_match(tm):
    """End to end through lm-eval with a scripted model: gsm8k right on 1 of 2 docs,
    minerva_math right on 2 of 2, so the domain score is (0.5 + 1.0) / 2."""
    from lm_eval import simple_evaluate
    from lm_eval.api.model import LM

    class Scripted(LM):
        def generate_until(self, requests):
            outs = []
            for r in requests:
                doc = r.doc
                if "question" in doc:  # gsm8k: correct for the first test doc only
                    gold = doc["answer"].split("#### ")[-1]
                    outs.append(f" ...\n#### {gold if r.doc_id == 0 else gold + '1'}")
                else:
                    outs.append(f" ...\nFinal Answer: The final answer is ${doc['answer']}$. I hope it is correct.")
            return outs

        def loglikelihood(self, requests):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests):
            raise NotImplementedError

    res = simple_evaluate(model=Scripted(), tasks=["slm_math"], limit=2, task_manager=tm)["results"]
    assert res["slm_gsm8k"]["exact_match,strict-match"] == 0.5
    assert res["slm_minerva_math"]["exact_match,strict-match"] == 1.0
    assert res["slm_math"]["exact_match,strict-match"] == pytest.approx(0.75)
    assert set(res["slm_math"]) & {"exact_match,flexible-extract", "exact_match,none"} == set()


# --- the multi-config loader -----------------------------------------------------------


def write_mirror(root, hub_id, configs):
    """A tiny hub-style mirror: README configs + <config>/test.jsonl."""
    import json

    repo = root / hub_id
    lines = ["---", "configs:"]
    for config, rows in configs.items():
        (repo / config).mkdir(parents=True)
        (repo / config / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        lines += [f"- config_name: {config}", "  data_files:", "  - split: test", f"    path: {config}/test.jsonl"]
    (repo / "README.md").write_text("\n".join(lines + ["---", ""]))


def test_load_configs_concatenates_in_order_and_subsets_across_configs(tmp_path):
    from slm_tasks.math_utils import load_configs

    write_mirror(
        tmp_path,
        "org/math",
        {
            "a": [{"problem": f"a{i}", "type": "A"} for i in range(30)],
            "b": [{"problem": f"b{i}", "type": "B"} for i in range(10)],
        },
    )
    full = load_configs("org/math", ["b", "a"], eval_split="test", slm_data_dir=str(tmp_path), version=1.0)
    assert full["test"]["problem"][:11] == [f"b{i}" for i in range(10)] + ["a0"]
    lite = load_configs(
        "org/math", ["a", "b"], eval_split="test", lite_n=8, lite_strata="type", slm_data_dir=str(tmp_path)
    )
    assert sorted(lite["test"]["type"]) == ["A"] * 6 + ["B"] * 2  # proportional to 30:10


def test_missing_math_data_names_the_dataset_and_the_fix(tmp_path):
    from slm_tasks.data import SLMDataError
    from slm_tasks.math_utils import load_configs

    write_mirror(tmp_path, "org/math", {"a": [{"problem": "x"}]})
    with pytest.raises(SLMDataError, match=r"EleutherAI/hendrycks_math.*SLM_DATA_DIR"):
        load_configs("EleutherAI/hendrycks_math", ["algebra"], eval_split="test", slm_data_dir=str(tmp_path))
    with pytest.raises(SLMDataError, match=r"no config 'zz'"):
        load_configs("org/math", ["a", "zz"], eval_split="test", slm_data_dir=str(tmp_path))
