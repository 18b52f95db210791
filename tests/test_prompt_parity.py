"""Our tasks send exactly the requests lm-eval's built-in tasks send, on the same docs.

The built-in side is lm-eval's own YAML pointed at the mirror folder (no slm_tasks code on
that path), so any drift in our YAMLs shows up here.
"""

import pytest

# ours, built-in YAML (under lm_eval/tasks), hub id, overrides the built-in needs offline,
# shot counts to compare (few-shot only where the mirror has the few-shot split).
CASES = [
    ("slm_hellaswag", "hellaswag/hellaswag.yaml", "Rowan/hellaswag", {"training_split": None}, [0]),
    ("slm_winogrande", "winogrande/default.yaml", "allenai/winogrande", {"training_split": None}, [0]),
    ("slm_piqa", "piqa/piqa.yaml", "baber/piqa", {"training_split": None}, [0]),
    ("slm_social_iqa", "siqa/siqa.yaml", "lighteval/siqa", {}, [0, 3]),
    ("slm_commonsense_qa", "commonsense_qa/default.yaml", "tau/commonsense_qa", {}, [0, 3]),
    ("slm_openbookqa", "openbookqa/openbookqa.yaml", "allenai/openbookqa", {}, [0, 3]),
    ("slm_boolq", "super_glue/boolq/default.yaml", "aps/super_glue", {"training_split": None}, [0]),
    ("slm_truthfulqa_mc2", "truthfulqa/truthfulqa_mc2.yaml", "truthfulqa/truthful_qa", {}, [0]),
    ("slm_arc_easy", "arc/arc_easy.yaml", "allenai/ai2_arc", {}, [0, 5]),
    ("slm_arc_challenge", "arc/arc_challenge.yaml", "allenai/ai2_arc", {}, [0, 5]),
]


@pytest.mark.parametrize("ours, builtin_yaml, hub_id, overrides, shots", CASES, ids=[c[0] for c in CASES])
def test_requests_equal_the_builtin_task(parity, ours, builtin_yaml, hub_id, overrides, shots):
    ref = parity.builtin(builtin_yaml, hub_id, **overrides)
    mine = parity.ours(ours)
    for k in shots:
        expected = parity.requests(ref, limit=8, shots=k)
        got = parity.requests(mine, limit=8, shots=k)
        assert len(got) >= 16  # at least two choices per doc
        assert got == expected, f"{ours} {k}-shot differs from lm-eval's built-in"


@pytest.mark.parametrize("subject", ["anatomy", "high_school_us_history", "college_physics"])
def test_mmlu_as_one_task_matches_the_per_subject_builtins(parity, subject):
    ref = parity.builtin(f"mmlu/default/mmlu_{subject}.yaml", "cais/mmlu")
    mine = parity.ours("slm_mmlu")
    ref_docs = list(ref.eval_docs)[:3]
    for k in (0, 5):
        ref.set_config(key="num_fewshot", value=k)
        mine.set_config(key="num_fewshot", value=k)
        for doc in ref_docs:
            assert mine.fewshot_context(doc, k) == ref.fewshot_context(doc, k)
            assert mine.doc_to_choice(doc) == ref.doc_to_choice(doc)
            assert mine.doc_to_target(doc) == ref.doc_to_target(doc)
    # the same docs are in our single task, subject by subject
    ours_subject = [d for d in mine.eval_docs if d["subject"] == subject]
    assert [d["question"] for d in ours_subject] == [d["question"] for d in ref.eval_docs]


def test_mmlu_reports_size_weighted_and_macro_accuracy():
    from slm_tasks.mmlu import macro_mean

    items = [("a", 1), ("a", 1), ("a", 1), ("b", 0)]
    assert macro_mean(items) == 0.5  # size-weighted would be 0.75
