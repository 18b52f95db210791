"""One real slm-llamacpp run of a few long-context cells, end to end through lm-eval: the
prompts reach the model at their length, the samples record it, a cell past the window is
not applicable (no acc), and the score is the answer found in the greedy output."""

from __future__ import annotations

import json

import pytest

CELLS = """include: {base}
task: lc_probe
metadata: {{version: 1.0, lc_kind: single, lc_lengths: [1000, 2000], lc_depths: [50], lc_samples: 2,
           lc_needles: 1, lc_seed: 1234, lc_max_gen_toks: 24, prompts_per_model: true}}
"""


@pytest.fixture(scope="module")
def run(mirror, tmp_path_factory):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from slm_tasks.paths import task_dir

    folder = tmp_path_factory.mktemp("lc")
    base = task_dir() / "long_context" / "slm_niah_single.yaml"
    (folder / "lc_probe.yaml").write_text(CELLS.format(base=base), encoding="utf-8")
    # n_ctx 1500: the 2000-token cells do not fit, so they must come back not applicable
    args = {"model": "smollm2-135m", "n_threads": 2, "n_ctx": 1500}
    # the model arguments reach the loader as lm-eval's CLI passes them: in the metadata
    tm = TaskManager(include_path=[str(task_dir()), str(folder)], include_defaults=False, metadata=args)
    return simple_evaluate(
        model="slm-llamacpp",
        model_args=args,
        tasks=["lc_probe"],
        task_manager=tm,
        log_samples=True,
    )


def test_applicable_cells_are_scored_and_the_rest_are_not(run):
    res = run["results"]["lc_probe"]
    samples = run["samples"]["lc_probe"]
    assert len(samples) == 4
    ran = [s for s in samples if s["doc"]["applicable"]]
    na = [s for s in samples if not s["doc"]["applicable"]]
    assert [s["doc"]["length"] for s in ran] == [1000, 1000] and len(na) == 2
    assert all("n_ctx=1500" in s["doc"]["reason"] and "acc" not in s for s in na)
    for s in ran:
        doc, out = s["doc"], s["resps"][0][0]
        assert s["arguments"][0][0] == doc["prompt"]  # the prompt reached the model unchanged
        assert abs(doc["n_tokens"] - 1000) <= 20
        assert s["acc"] == float(doc["answers"][0].lower() in out.lower())
    assert res["acc,none"] == pytest.approx(sum(s["acc"] for s in ran) / 2)
    assert res["not_applicable,none"] == pytest.approx(0.5)
    json.dumps(run["results"])  # the results file can be written


def test_the_run_names_its_lengths_for_the_bench(run):
    """`slm-suite run`'s bench measures speed and memory at the lengths the run evaluated,
    read from the run's own task configs."""
    from slm_tasks.adapters.bench_long import domain_lengths

    assert domain_lengths(run["configs"]) == [1000, 2000]


def test_slm_suite_passes_the_model_arguments_to_the_tasks(mirror):
    """`slm-suite run`'s path (slm_tasks.api.evaluate) hands the model arguments to the loader
    as lm-eval's CLI does: the cells are counted in the model's tokenizer and judged against
    its window (n_ctx 600 here: every lite cell is not applicable, so nothing long runs)."""
    from slm_tasks.api import evaluate

    out = evaluate(
        "slm-llamacpp",
        {"model": "smollm2-135m", "n_threads": 2, "n_ctx": 600},
        tasks=["slm_niah_single_lite"],
        log_samples=True,
    )
    samples = out["samples"]["slm_niah_single_lite"]
    assert len(samples) == 4 and all(s["doc"]["tokenizer"].endswith(".gguf") for s in samples)
    assert all(not s["doc"]["applicable"] and "n_ctx=600" in s["doc"]["reason"] for s in samples)
    res = out["results"]["slm_niah_single_lite"]
    assert "acc,none" not in res and res["not_applicable,none"] == 1.0
